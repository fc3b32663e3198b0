package trigger

import "testing"

func TestParse(t *testing.T) {
	for _, tr := range All() {
		if got, err := Parse(string(tr)); err != nil || got != tr {
			t.Errorf("Parse(%q) = %q, %v", tr, got, err)
		}
	}
	for _, bad := range []string{"", "SIGNAL", "hup", "notify"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted an unknown trigger", bad)
		}
	}
}

func TestParseChange(t *testing.T) {
	tests := map[string]Change{
		"credentials": ChangeCredentials, "wallet": ChangeWallet, "all": ChangeAll,
		"": ChangeAll, "Wallet": ChangeAll, "../../x": ChangeAll,
	}
	for in, want := range tests {
		if got := ParseChange(in); got != want {
			t.Errorf("ParseChange(%q) = %q, want %q", in, got, want)
		}
	}
}
