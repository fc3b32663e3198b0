package refresh

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

func newClient(t *testing.T, sim *cestest.Server) *ces.Client {
	t.Helper()
	c, err := ces.New(ces.Config{
		BaseURL: sim.URL, TokenURL: sim.TokenURL,
		ClientID: "cestest-client", ClientSecret: "cestest-secret",
		Transport: sim.Client().Transport, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func newPipeline(t *testing.T, sim *cestest.Server, cfg Config, write bool) *Pipeline {
	t.Helper()
	deps := Deps{CES: newClient(t, sim)}
	if write {
		w, err := wallet.NewWriter(wallet.Config{Dir: cfg.WalletDir}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		deps.Writer = w
	}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunWritesThenFindsUnchanged(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 3, SendWalletPassword: true})
	defer sim.Close()
	cfg := DefaultConfig()
	cfg.WalletDir = t.TempDir()
	p := newPipeline(t, sim, cfg, true)
	want := sim.Current()

	var told []string
	res, err := p.Run(t.Context(), RunOptions{BeforeWrite: func(s []string) { told = s }})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Swapped || res.Generation != 1 || res.DryRun {
		t.Fatalf("first run %+v", res)
	}
	if !res.CertificateEndDate.Equal(want.End) || !res.CertificateStartDate.Equal(want.Start) {
		t.Fatalf("dates %v..%v, want %v..%v", res.CertificateStartDate, res.CertificateEndDate, want.Start, want.End)
	}
	if res.WalletPassword != want.WalletPassword {
		t.Fatal("the result does not carry CES's wallet password")
	}
	for name := range want.Schemas {
		if !slices.Contains(res.Schemas, name) {
			t.Fatalf("schema %s missing from %v", name, res.Schemas)
		}
	}
	for name := range want.Files {
		if !slices.Contains(res.Files, name) {
			t.Fatalf("file %s missing from %v", name, res.Files)
		}
	}
	if res.Derived.PEMSource == "" || len(res.Derived.Errors) != 0 {
		t.Fatalf("derive report %+v, want an ewallet.pem", res.Derived)
	}
	for _, pw := range want.Schemas {
		if !slices.Contains(told, pw) {
			t.Fatal("BeforeWrite was not told a schema password")
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.WalletDir, "ewallet.pem")); err != nil {
		t.Fatal(err)
	}

	res, err = p.RunOnce(t.Context())
	if err != nil || res.Swapped || res.Generation != 1 {
		t.Fatalf("second run %+v, %v; want unchanged generation 1", res, err)
	}
	live, err := p.Live()
	if err != nil || live.Generation != 1 || !live.CertificateEndDate.Equal(want.End) {
		t.Fatalf("Live = %+v, %v", live, err)
	}
	if live.WalletPassword != want.WalletPassword {
		t.Fatal("Live forgot CES's wallet password")
	}
}

func TestRunStagesAndKinds(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 4})
	defer sim.Close()
	cfg := DefaultConfig()
	cfg.WalletDir = t.TempDir()
	p := newPipeline(t, sim, cfg, true)
	if _, err := p.Run(t.Context(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		fault cestest.FaultKind
		stage Stage
		kind  string
	}{
		{cestest.Status500, StageFetch, "server_error"},
		{cestest.OK200Error, StageFetch, "upstream_error"},
		{cestest.BadBase64, StageDecode, "decode"},
		{cestest.HostileName, StageDecode, "decode"},
		{cestest.EmptyWallet, StageValidate, "validate"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			sim.Rotate("all")
			sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: tt.fault})
			defer sim.ClearFaults()
			told := false
			_, err := p.Run(t.Context(), RunOptions{BeforeWrite: func([]string) { told = true }})
			var e *Error
			if !errors.As(err, &e) || e.Stage != tt.stage {
				t.Fatalf("Run = %v, want a %s error", err, tt.stage)
			}
			if k := Kind(err); k != tt.kind || !slices.Contains(Kinds(), k) {
				t.Fatalf("Kind = %q, want %q (one of %v)", k, tt.kind, Kinds())
			}
			if told {
				t.Fatal("BeforeWrite told about a payload that is not written")
			}
			if live, err := p.Live(); err != nil || live.Generation != 1 {
				t.Fatalf("live generation %+v (%v), want 1 kept", live, err)
			}
		})
	}
}

func TestKindsAreDistinctAndComplete(t *testing.T) {
	ks := Kinds()
	if len(slices.Compact(slices.Sorted(slices.Values(ks)))) != len(ks) {
		t.Fatalf("duplicate kinds: %v", ks)
	}
	for _, want := range []string{"rate_limited", "server_error", "canceled", "decode", "validate", "derive", "write", KindOther} {
		if !slices.Contains(ks, want) {
			t.Errorf("Kinds lacks %q: %v", want, ks)
		}
	}
	if slices.Contains(ks, string(StageFetch)) {
		t.Error("a fetch failure is counted by its CES kind, never as fetch")
	}
	if k := Kind(errors.New("boom")); k != KindOther {
		t.Errorf("Kind(plain) = %q", k)
	}
}

// TestDryRunWritesNothingAndWarnsOnDates: doctor's dry run is the same
// pipeline without a writer, so it sees what validation sees (the dates too).
func TestDryRunWritesNothingAndWarnsOnDates(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.WalletDir = dir
	start := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	f := &staticCES{creds: &ces.Credentials{
		WalletName:           "w",
		CertificateStartDate: start,
		CertificateEndDate:   start.Add(-time.Hour),
		Schemas:              map[string]string{"APP": "pw-app-1"},
		Wallet:               map[string]string{"tnsnames.ora": "ZGI="},
	}}
	cfg.PEM = false
	p, err := New(cfg, Deps{CES: f})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Run(context.Background(), RunOptions{})
	if err != nil || !res.DryRun || res.Swapped {
		t.Fatalf("dry run %+v, %v", res, err)
	}
	if !strings.Contains(strings.Join(res.Warnings, "; "), "certificateEndDate is before certificateStartDate") {
		t.Fatalf("warnings %q lack the date check", res.Warnings)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a dry run wrote %d entries", len(ents))
	}
}

func TestWalletOnlyUsesTheZip(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 5})
	defer sim.Close()
	cfg := DefaultConfig()
	cfg.WalletDir, cfg.WalletOnly = t.TempDir(), true
	p := newPipeline(t, sim, cfg, true)
	res, err := p.Run(t.Context(), RunOptions{})
	if err != nil || !res.Swapped {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if len(res.Schemas) != 0 || sim.Calls(cestest.OpFetchCredentials) != 0 || sim.Calls(cestest.OpFetchWallet) != 1 {
		t.Fatalf("wallet_only asked for schema passwords: %v", res.Schemas)
	}
}

type staticCES struct{ creds *ces.Credentials }

func (s *staticCES) FetchCredentials(context.Context) (*ces.Credentials, error) { return s.creds, nil }
func (s *staticCES) FetchWallet(context.Context) ([]byte, error) {
	return nil, errors.New("staticCES: no zip")
}

// TestSQLNetDirAndPublisher: sqlnet.ora names SQLNetDir, not the folder
// written (Secret-only mode stages in a private folder, readers mount the
// Secret elsewhere), and Live fails while a Publisher says its output does
// not hold the live generation.
func TestSQLNetDirAndPublisher(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 5})
	defer sim.Close()
	cfg := DefaultConfig()
	cfg.WalletDir, cfg.SQLNetDir = t.TempDir(), "/wallet"
	disk, err := wallet.NewWriter(wallet.Config{Dir: cfg.WalletDir}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	pw := &publishing{Writer: disk}
	p, err := New(cfg, Deps{CES: newClient(t, sim), Writer: pw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(t.Context(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	ora, err := os.ReadFile(filepath.Join(cfg.WalletDir, "sqlnet.ora"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ora), `DIRECTORY="/wallet"`) || strings.Contains(string(ora), cfg.WalletDir) {
		t.Fatalf("sqlnet.ora does not name SQLNetDir:\n%s", ora)
	}
	if _, err := p.Live(); err != nil {
		t.Fatalf("Live: %v", err)
	}
	pw.err = errors.New("secret forbidden")
	if _, err := p.Live(); err == nil || !strings.Contains(err.Error(), "secret forbidden") {
		t.Fatalf("Live while the Secret is not written: %v", err)
	}
}

type publishing struct {
	*wallet.Writer
	err error
}

func (p *publishing) PublishErr() error { return p.err }

// TestExpiredWalletSparesTheSecret: with nothing valid on disk (a new fleet
// leader's empty staging folder), an expired wallet is still refused while
// the writer's other output (Holder: the Secret) holds a valid generation;
// when it holds none, the expired wallet goes live, as without a Secret.
func TestExpiredWalletSparesTheSecret(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 7})
	defer sim.Close()
	later := time.Now().AddDate(20, 0, 0) // every certificate of the sim's wallet has expired by then
	for _, tc := range []struct {
		name    string
		held    bool
		wantErr bool
	}{
		{"the Secret holds a valid generation", true, true},
		{"the Secret holds none", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.WalletDir = t.TempDir()
			disk, err := wallet.NewWriter(wallet.Config{Dir: cfg.WalletDir}, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			w := &holding{Writer: disk, gen: 9, end: later.Add(24 * time.Hour), ok: tc.held}
			p, err := New(cfg, Deps{CES: newClient(t, sim), Writer: w, Now: func() time.Time { return later }})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Run(t.Context(), RunOptions{})
			var ee *ExpiredError
			if got := errors.As(err, &ee); got != tc.wantErr || (got && (ee.Generation != 9 || Kind(err) != string(StageExpired))) {
				t.Fatalf("Run: %v; want an ExpiredError keeping generation 9: %v", err, tc.wantErr)
			}
			if _, verr := wallet.Verify(cfg.WalletDir); (verr == nil) == tc.wantErr {
				t.Fatalf("generation on disk: %v, want one only when nothing valid is held", verr)
			}
		})
	}
}

type holding struct {
	*wallet.Writer
	gen int64
	end time.Time
	ok  bool
}

func (h *holding) Held(context.Context) (int64, time.Time, bool) { return h.gen, h.end, h.ok }
