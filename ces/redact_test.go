package ces

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	long, short := "abc-long-password", "abc"
	in := strings.Join([]string{long, short, `x"y`, `x\"y`,
		base64.StdEncoding.EncodeToString([]byte(long)), base64.RawURLEncoding.EncodeToString([]byte("??>>pw"))}, " ")
	got := Redact(in, short, long, `x"y`, "??>>pw", "")
	if want := strings.TrimSpace(strings.Repeat(Redacted+" ", 6)); got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}

func TestScrubRedactsSecretAndToken(t *testing.T) {
	f := newFake(t)
	c := f.client(nil)
	if err := c.CheckToken(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	tok := f.currentToken()
	in := "secret " + testSecret + " b64 " + base64.StdEncoding.EncodeToString([]byte(testSecret)) + " token " + tok
	got := c.Scrub(in)
	if strings.Contains(got, testSecret) || strings.Contains(got, tok) || strings.Count(got, Redacted) != 3 {
		t.Errorf("Scrub = %q", got)
	}
}
