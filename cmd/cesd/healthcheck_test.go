package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   int
	}{{http.StatusOK, exitOK}, {http.StatusServiceUnavailable, exitFail}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(tc.status)
		}))
		addr := strings.TrimPrefix(srv.URL, "http://")
		var errb strings.Builder
		if got := run([]string{"healthcheck", "--metrics-listen", addr}, envMap(nil), &strings.Builder{}, &errb); got != tc.want {
			t.Errorf("readyz %d: exit %d, want %d (%s)", tc.status, got, tc.want, errb.String())
		}
		srv.Close()
	}
}

func TestReadyzURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9480": "http://127.0.0.1:9480/readyz",
		":9480":          "http://127.0.0.1:9480/readyz",
		"0.0.0.0:9480":   "http://127.0.0.1:9480/readyz",
		"[::]:9480":      "http://127.0.0.1:9480/readyz",
		"[::1]:9480":     "http://[::1]:9480/readyz",
	} {
		if got, err := readyzURL(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := readyzURL("9480"); err == nil {
		t.Error("a bare port was accepted")
	}
}
