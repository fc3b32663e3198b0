package main

import "testing"

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"Wallet_RDSADW1":       "Wallet_RDSADW1",
		"CN=db, O=Oracle":      "CN=db, O=Oracle",
		"Ünïcode wallet":       "Ünïcode wallet",
		"":                     `""`,
		"a\nb":                 `"a\nb"`,
		"\x1b[31mred":          `"\x1b[31mred"`,
		"abc\u202edef":         `"abc\u202edef"`,
		"tab\there":            `"tab\there"`,
		"x\r{\"level\":\"e\"}": `"x\r{\"level\":\"e\"}"`,
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %s, want %s", in, got, want)
		}
	}
}
