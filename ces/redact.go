package ces

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
)

// Redacted replaces a secret in text cesd did not write itself.
const Redacted = "[REDACTED]"

// Redact replaces every non-empty secret in s with [REDACTED]: as it is, as
// JSON spells it (credentials.json), and in base64 (standard and URL
// alphabets, padded or not), which is how a hook most likely re-encodes one.
// Short secrets are redacted too: a mangled log beats a leaked password.
func Redact(s string, secrets ...string) string {
	var forms []string
	for _, sec := range secrets {
		if sec != "" {
			forms = append(forms, secretForms(sec)...)
		}
	}
	// Longest first: a short secret must not eat into a longer one's form.
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, form := range forms {
		s = strings.ReplaceAll(s, form, Redacted)
	}
	return s
}

// secretForms lists the spellings of sec.
func secretForms(sec string) []string {
	b := []byte(sec)
	forms := []string{sec}
	if q, err := json.Marshal(sec); err == nil {
		if esc := string(q[1 : len(q)-1]); esc != sec {
			forms = append(forms, esc)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		forms = append(forms, enc.EncodeToString(b))
	}
	return forms
}

// Scrub redacts the client secret and the access token currently cached in
// s (see Redact): for text from outside, such as an on_change hook's output.
func (c *Client) Scrub(s string) string {
	secrets := []string{c.secret}
	if t := c.cachedToken(); t != nil {
		secrets = append(secrets, t.AccessToken)
	}
	return Redact(s, secrets...)
}
