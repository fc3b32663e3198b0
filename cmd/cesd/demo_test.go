package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/wallet"
)

// TestDemo runs the zero-config demo until it has narrated a rotation, then
// stops it as Ctrl-C would.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out := &syncWriter{w: &strings.Builder{}}
	c := &cli{env: envMap(nil), stdout: out, stderr: out}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exited := make(chan int, 1)
	go func() { exited <- c.cmdDemo(ctx, []string{"--dir", dir, "--rotate-every", "1s"}) }()

	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "generation 2 is live") {
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
	for _, want := range []string{"CES simulator", "metrics", "Ctrl-C", "called back", "stopped."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := wallet.Verify(filepath.Join(dir, "wallet")); err != nil {
		t.Fatalf("demo wallet: %v", err)
	}
}
