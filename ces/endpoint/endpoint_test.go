package endpoint

import (
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true,
		"example.com": false, "10.0.0.1": false, "": false, "localhost.example.com": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v", host, got)
		}
	}
}

func TestParseCallback(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://cesd.example.com:8480/cesd/notify": true,
		"http://10.0.0.5/cb":                        true,
		"/cb":                                       false,
		"ftp://h/cb":                                false,
		"https:///cb":                               false,
		"https://u:s3cret@h/%zz":                    false,
	} {
		_, err := ParseCallback(raw)
		if (err == nil) != ok {
			t.Errorf("ParseCallback(%q) = %v", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

func TestRedaction(t *testing.T) {
	tests := []struct{ in, redacted, forLog string }{
		{"https://u:p4ss@h:8443/cb?token=s3cret", "https://u:xxxxx@h:8443/cb?token=s3cret", "https://h:8443/cb?REDACTED"},
		{"mailto:ops@example.com", "mailto:ops@example.com", "mailto:ops@example.com"},
		{"http://h/cb", "http://h/cb", "http://h/cb"},
		{"http://h/%zz", "(unparsable URL)", "(unparsable URL)"},
	}
	for _, tt := range tests {
		if got := Redacted(tt.in); got != tt.redacted {
			t.Errorf("Redacted(%q) = %q, want %q", tt.in, got, tt.redacted)
		}
		if got := ForLog(tt.in); got != tt.forLog {
			t.Errorf("ForLog(%q) = %q, want %q", tt.in, got, tt.forLog)
		}
	}
}
