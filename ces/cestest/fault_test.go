package cestest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

var allOps = []Op{OpToken, OpFetchCredentials, OpFetchWallet, OpList, OpRegister, OpUnregister}

func TestStatusFaults(t *testing.T) {
	tests := []struct {
		kind       FaultKind
		retryAfter time.Duration
		status     int
		header     string // Retry-After
		body       string // substring
	}{
		{Status401, 0, 401, "", "unauthorized"},
		{Status403, 0, 403, "", "forbidden"},
		{Status404, 0, 404, "", "not found"},
		{Status429, 0, 429, "", "too_many_requests"},
		{Status429, 1500 * time.Millisecond, 429, "2", "too_many_requests"},
		{Status500, 0, 500, "", "internal"},
		{Status503, 0, 503, "", "unavailable"},
		{OK200Error, 0, 200, "", "Cannot connect to upstream service"},
	}
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	for _, tc := range tests {
		for _, op := range allOps {
			s.SetFault(op, Fault{Kind: tc.kind, RetryAfter: tc.retryAfter})
			r := send(t, s, opRequest(t, s, op, tok))
			s.ClearFaults()
			body := tc.body
			if op == OpToken && tc.kind == Status401 {
				body = `"invalid_client"`
			}
			if r.status != tc.status || r.header.Get("Retry-After") != tc.header || !strings.Contains(string(r.body), body) {
				t.Errorf("%v %v: %d Retry-After=%q %s; want %d %q %q", op, tc.kind, r.status,
					r.header.Get("Retry-After"), r.body, tc.status, tc.header, body)
			}
		}
	}
	if tok2 := getToken(t, s); tok2 == "" {
		t.Errorf("no token after ClearFaults")
	}
}

func TestFaultTimes(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	s.SetFault(OpList, Fault{Kind: Status503, Times: 2})
	var got []int
	for range 3 {
		got = append(got, send(t, s, opRequest(t, s, OpList, tok)).status)
	}
	if got[0] != 503 || got[1] != 503 || got[2] != 200 {
		t.Errorf("statuses %v, want 503 503 200", got)
	}
	s.SetFault(OpList, Fault{Kind: Status500}) // until cleared
	for range 3 {
		if st := send(t, s, opRequest(t, s, OpList, tok)).status; st != 500 {
			t.Errorf("status %d, want 500", st)
		}
	}
	s.SetFault(OpList, Fault{})
	if st := send(t, s, opRequest(t, s, OpList, tok)).status; st != 200 {
		t.Errorf("after SetFault(zero): %d", st)
	}
}

func TestBodyFaults(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	isJSON := func(r reply) bool { return r.err == nil && json.Valid(r.body) }
	walletOf := func(t *testing.T, r reply) map[string]string {
		t.Helper()
		return decodeWire(t, r.body, false).Wallet
	}
	tests := []struct {
		name  string
		op    Op
		fault Fault
		check func(t *testing.T, r reply)
	}{
		{"truncated lies", OpFetchCredentials, Fault{Kind: Truncated}, func(t *testing.T, r reply) {
			if !errors.Is(r.err, io.ErrUnexpectedEOF) {
				t.Errorf("read error %v, want unexpected EOF", r.err)
			}
		}},
		{"truncated honest", OpFetchCredentials, Fault{Kind: Truncated, HonestLength: true}, func(t *testing.T, r reply) {
			if r.err != nil || json.Valid(r.body) || len(r.body) == 0 {
				t.Errorf("err %v valid %v", r.err, json.Valid(r.body))
			}
		}},
		{"truncated token", OpToken, Fault{Kind: Truncated}, func(t *testing.T, r reply) {
			if r.err == nil {
				t.Errorf("token body read fine")
			}
		}},
		{"truncated zip", OpFetchWallet, Fault{Kind: Truncated, HonestLength: true}, func(t *testing.T, r reply) {
			if _, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body))); err == nil {
				t.Errorf("truncated zip opened")
			}
		}},
		{"bad json", OpFetchCredentials, Fault{Kind: BadJSON}, func(t *testing.T, r reply) {
			if isJSON(r) {
				t.Errorf("body is valid JSON: %s", r.body)
			}
		}},
		{"bad json list", OpList, Fault{Kind: BadJSON}, func(t *testing.T, r reply) {
			if isJSON(r) {
				t.Errorf("body is valid JSON")
			}
		}},
		{"bad json token", OpToken, Fault{Kind: BadJSON}, func(t *testing.T, r reply) {
			if isJSON(r) {
				t.Errorf("body is valid JSON")
			}
		}},
		{"bad zip", OpFetchWallet, Fault{Kind: BadJSON}, func(t *testing.T, r reply) {
			if _, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body))); err == nil {
				t.Errorf("bad zip opened")
			}
		}},
		{"bad base64", OpFetchCredentials, Fault{Kind: BadBase64}, func(t *testing.T, r reply) {
			bad := 0
			for _, v := range walletOf(t, r) {
				if _, err := base64.StdEncoding.DecodeString(v); err != nil {
					bad++
				}
			}
			if bad != 1 {
				t.Errorf("%d values not base64, want 1", bad)
			}
		}},
		{"hostile name", OpFetchCredentials, Fault{Kind: HostileName}, func(t *testing.T, r reply) {
			if _, ok := walletOf(t, r)["../../etc/passwd"]; !ok {
				t.Errorf("no hostile name in %s", r.body)
			}
		}},
		{"hostile abs", OpFetchCredentials, Fault{Kind: HostileName, Name: "/abs"}, func(t *testing.T, r reply) {
			if _, ok := walletOf(t, r)["/abs"]; !ok {
				t.Errorf("no /abs")
			}
		}},
		{"hostile nul", OpFetchCredentials, Fault{Kind: HostileName, Name: "a\x00b"}, func(t *testing.T, r reply) {
			if _, ok := walletOf(t, r)["a\x00b"]; !ok {
				t.Errorf("no a\\x00b")
			}
		}},
		{"hostile zip", OpFetchWallet, Fault{Kind: HostileName}, func(t *testing.T, r reply) {
			zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
			if err != nil && zr == nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range zr.File {
				found = found || f.Name == "../../etc/passwd"
			}
			if !found {
				t.Errorf("no hostile zip entry")
			}
		}},
		{"empty wallet", OpFetchCredentials, Fault{Kind: EmptyWallet}, func(t *testing.T, r reply) {
			if w := walletOf(t, r); w == nil || len(w) != 0 || !bytes.Contains(r.body, []byte(`"wallet":{}`)) {
				t.Errorf("wallet %v", w)
			}
		}},
		{"empty zip", OpFetchWallet, Fault{Kind: EmptyWallet}, func(t *testing.T, r reply) {
			if files := unzip(t, r.body); len(files) != 0 {
				t.Errorf("%d files", len(files))
			}
		}},
		{"latency", OpFetchCredentials, Fault{Kind: Latency, Latency: time.Millisecond}, func(t *testing.T, r reply) {
			if walletOf(t, r)["cwallet.sso"] == "" {
				t.Errorf("latency changed the answer")
			}
		}},
		{"latency with status", OpList, Fault{Kind: Status503, Latency: time.Millisecond}, func(t *testing.T, r reply) {
			if r.status != 503 {
				t.Errorf("status %d", r.status)
			}
		}},
		{"n/a kind served normally", OpList, Fault{Kind: BadBase64}, func(t *testing.T, r reply) {
			if !isJSON(r) || r.status != 200 {
				t.Errorf("%d %s", r.status, r.body)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.SetFault(tc.op, tc.fault)
			defer s.ClearFaults()
			tc.check(t, send(t, s, opRequest(t, s, tc.op, tok)))
		})
	}
	if n := s.TokensIssued(); n != 1 {
		t.Errorf("TokensIssued = %d: faulted token answers must not count", n)
	}
}

func TestHang(t *testing.T) {
	for _, op := range allOps {
		t.Run(op.String(), func(t *testing.T) {
			s := newTestServer(t, Options{})
			tok := getToken(t, s)
			hanging := make(chan Op, 1)
			s.mu.Lock()
			s.blockHook = func(op Op) { hanging <- op }
			s.mu.Unlock()
			s.SetFault(op, Fault{Kind: Hang})
			ctx, cancel := context.WithCancel(context.Background())
			req := opRequest(t, s, op, tok).WithContext(ctx)
			done := make(chan error, 1)
			go func() {
				resp, err := s.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			<-hanging
			cancel() // the client gives up
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("err %v, want context.Canceled", err)
			}
		})
	}
}

func TestCloseReleasesHang(t *testing.T) {
	s := NewServer(Options{})
	tok := getToken(t, s)
	hanging := make(chan Op, 2)
	s.mu.Lock()
	s.blockHook = func(op Op) { hanging <- op }
	s.mu.Unlock()
	s.SetFault(OpFetchCredentials, Fault{Kind: Hang})
	s.SetFault(OpList, Fault{Kind: Latency, Latency: time.Hour})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, op := range []Op{OpFetchCredentials, OpList} {
		req := opRequest(t, s, op, tok)
		wg.Go(func() {
			resp, err := s.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		})
	}
	<-hanging
	<-hanging
	s.Close()
	wg.Wait()
	for range 2 {
		if err := <-errs; err == nil {
			t.Errorf("a released request got an answer")
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 10 {
				op := []Op{OpFetchCredentials, OpFetchWallet, OpList, OpRegister}[i]
				if r := send(t, s, opRequest(t, s, op, tok)); r.status != 200 {
					t.Errorf("%v: %d", op, r.status)
				}
				s.Current()
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			s.Rotate("all")
			s.SetFault(OpToken, Fault{Kind: Latency})
			s.ClearFaults()
		}
	})
	wg.Wait()
	if s.Current().Number != 11 {
		t.Errorf("generation %d, want 11", s.Current().Number)
	}
}

func TestOversized(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	const size = 1 << 20
	s.SetFault(OpFetchCredentials, Fault{Kind: Oversized, Size: size})
	s.SetFault(OpToken, Fault{Kind: Oversized, Size: size})
	creds := send(t, s, opRequest(t, s, OpFetchCredentials, tok))
	var v struct {
		Wallets struct {
			Wallet map[string]string `json:"wallet"`
		} `json:"wallets"`
	}
	if err := json.Unmarshal(creds.body, &v); err != nil {
		t.Fatal(err)
	}
	if got := len(v.Wallets.Wallet[OversizedName]); got != size {
		t.Errorf("%s holds %d base64 bytes, want %d", OversizedName, got, size)
	}
	token := send(t, s, opRequest(t, s, OpToken, ""))
	if token.status != 200 || len(token.body) < size || !bytes.Contains(token.body, []byte(`"access_token"`)) {
		t.Errorf("token answer: %d, %d bytes", token.status, len(token.body))
	}
}
