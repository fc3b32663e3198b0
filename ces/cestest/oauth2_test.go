package cestest

import (
	"context"
	"net/http"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestOAuth2Interop checks that the x/oauth2 client-credentials flow the ces
// client is likely to use works, and reuses its token.
func TestOAuth2Interop(t *testing.T) {
	s := newTestServer(t, Options{ClientSecret: "p@ss:w0rd&="})
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{ClientID: "cestest-client", ClientSecret: "p@ss:w0rd&=",
			TokenURL: s.TokenURL, Scopes: []string{"urn:opc:idm:__myscopes__"}, AuthStyle: style}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.Client())
		hc := cfg.Client(ctx)
		for range 3 {
			resp, err := hc.Get(s.URL + NotificationPath)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("style %v: status %d", style, resp.StatusCode)
			}
		}
	}
	if s.TokensIssued() != 2 {
		t.Errorf("TokensIssued = %d, want 2 (one per client)", s.TokensIssued())
	}
}
