package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/wallet"

	"github.com/cesd/cesd/daemon/trigger"
)

// newFakePipeline is the real pipeline on a fake CES and writer; nothing
// is derived, and the live generation is the writer's.
func newFakePipeline(t testing.TB, f *fakeCES, w *fakeWriter) *refresh.Pipeline {
	t.Helper()
	p, err := refresh.New(refresh.Config{WalletDir: "/w"}, refresh.Deps{CES: f, Writer: w, Verify: w.verify})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// observerFunc records swaps.
type observerFunc func(SwapEvent)

func (f observerFunc) Swapped(ev SwapEvent) { f(ev) }

// fakeCES serves a credentials generation chosen by the test.
type fakeCES struct {
	mu         sync.Mutex
	gen        int
	fetchErr   error
	block      chan struct{} // when non-nil, FetchCredentials waits on it
	endpoints  []string
	registered chan string // told every RegisterEndpoint, when non-nil
	fetches    int
	fetched    chan error // told every fetch result, when non-nil
	empty      bool       // serve a wallet without files
}

func (f *fakeCES) FetchWallet(context.Context) ([]byte, error) {
	return nil, errors.New("fakeCES: FetchWallet is not faked")
}

func (f *fakeCES) FetchCredentials(ctx context.Context) (*ces.Credentials, error) {
	f.mu.Lock()
	block := f.block
	f.fetches++
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fetched != nil {
		f.fetched <- f.fetchErr
	}
	if f.fetchErr != nil {
		return nil, f.fetchErr
	}
	name := "gen" + string(rune('a'+f.gen%26))
	if f.empty {
		return &ces.Credentials{WalletName: name}, nil
	}
	return &ces.Credentials{
		WalletName: name,
		Schemas:    map[string]string{"APP": "pw-" + name},
		Wallet:     map[string]string{"tnsnames.ora": base64.StdEncoding.EncodeToString([]byte("db-" + name))},
	}, nil
}

func (f *fakeCES) set(fn func(f *fakeCES)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCES) ListEndpoints(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.endpoints), nil
}

func (f *fakeCES) RegisterEndpoint(_ context.Context, e string) error {
	f.mu.Lock()
	if !slices.Contains(f.endpoints, e) {
		f.endpoints = append(f.endpoints, e)
	}
	ch := f.registered
	f.mu.Unlock()
	if ch != nil {
		ch <- e
	}
	return nil
}

func (f *fakeCES) UnregisterEndpoint(_ context.Context, e string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endpoints = slices.DeleteFunc(f.endpoints, func(s string) bool { return s == e })
	return nil
}

// fakeWriter swaps when the wallet name changes.
type fakeWriter struct {
	mu     sync.Mutex
	gen    int64
	name   string
	writes int
}

func (w *fakeWriter) Write(p wallet.Payload) (wallet.Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if len(p.Files) == 0 {
		return wallet.Result{}, errors.New("empty wallet")
	}
	if p.WalletName == w.name {
		return wallet.Result{Generation: w.gen}, nil
	}
	w.gen++
	w.name = p.WalletName
	return wallet.Result{Generation: w.gen, Swapped: true}, nil
}

func (w *fakeWriter) verify(string) (*wallet.Manifest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen == 0 {
		return nil, errors.New("no generation")
	}
	return &wallet.Manifest{Generation: w.gen, WalletName: w.name}, nil
}

// sinkFunc adapts a function to trigger.Sink.
type sinkFunc func(trigger.Change)

func (f sinkFunc) Notify(c trigger.Change) { f(c) }
