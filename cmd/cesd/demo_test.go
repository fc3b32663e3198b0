package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/wallet"
)

// TestDemo runs the zero-config demo until the fallback poll has found a
// rotation whose callback was lost, as the narration promised, then stops
// it as Ctrl-C would.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out := &syncWriter{w: &strings.Builder{}}
	c := &cli{env: envMap(nil), stdout: out, stderr: out}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exited := make(chan int, 1)
	go func() { exited <- c.cmdDemo(ctx, []string{"--dir", dir, "--rotate-every", "1s"}) }()

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "the fallback poll found it") {
		if time.Now().After(deadline) {
			t.Fatalf("no rotation narrated:\n%s", out.String())
		}
		select {
		case code := <-exited:
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	for _, want := range []string{"CES simulator", "metrics", "Ctrl-C", "called back", "callback was LOST; cesd's next poll", "stopped."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := wallet.Verify(filepath.Join(dir, "wallet")); err != nil {
		t.Fatalf("demo wallet: %v", err)
	}
	for _, f := range []string{"hook.log", "cesd.log", "client_secret", "ces-ca.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}
