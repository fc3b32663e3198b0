//go:build reliability

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

// peakRSSLimit is the footprint bar (docs/performance.md): whatever CES or IAM sends,
// the shipped 64 MiB container limit holds.
const peakRSSLimit = 48 << 20

// timeBin is GNU time. Its %M is the child's peak RSS from wait4; unlike a
// Go parent, which starts children with vfork and so lends them its own
// high-water mark, time forks from a process of a megabyte or two.
const timeBin = "/usr/bin/time"

// fetchPeak runs `cesd fetch` under GNU time and returns whether it
// succeeded and its peak RSS in bytes.
func fetchPeak(t *testing.T, env []string) (bool, int64) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.Command(timeBin, "-f", "%M", "-o", out, cesdBin, "fetch")
	cmd.Env = env
	log, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	ok := err == nil
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
		t.Fatalf("cesd fetch: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// -o appends "Command exited with non-zero status 1" before the figure.
	lines := strings.Fields(string(b))
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("GNU time wrote %q", b)
	}
	return ok, kib << 10
}

// TestReliabilityPeakMemory sends answers of 1 KiB to 40 MiB, as a wallet
// file from CES and as padding of the IAM token answer, to `cesd fetch` and
// to `cesd run`, with default caps. Each must stay under 48 MiB of peak RSS
// and leave the last good generation live (or, for an accepted answer, a new
// one).
//
//	go test -tags reliability -count=1 -run TestReliabilityPeakMemory -v ./cmd/cesd
func TestReliabilityPeakMemory(t *testing.T) {
	if _, err := os.Stat(timeBin); err != nil {
		if os.Getenv("CESD_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s (GNU time) is missing, and CESD_REQUIRE_TOOLS=1", timeBin)
		}
		t.Skipf("%s (GNU time) is missing: apt-get install time", timeBin)
	}
	sizes := []struct {
		label string
		n     int
	}{{"1 KiB", 1 << 10}, {"1 MiB", 1 << 20}, {"8 MiB", 8 << 20}, {"40 MiB", 40 << 20}}
	var rows []string
	t.Cleanup(func() {
		report(t, "peak RSS under oversized answers (default caps: max_file_bytes 512KiB, max_wallet_bytes 1MiB, max_body_bytes 2MiB):\n\n"+
			"| answer | from | command | outcome | peak RSS |\n|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
	})
	for _, from := range []cestest.Op{cestest.OpFetchCredentials, cestest.OpToken} {
		for _, sz := range sizes {
			for _, mode := range []string{"fetch", "run"} {
				name := fmt.Sprintf("%s_%s_%s", from, strings.ReplaceAll(sz.label, " ", ""), mode)
				t.Run(name, func(t *testing.T) {
					f := cestest.Fault{Kind: cestest.Oversized, Size: sz.n}
					outcome, rss := peakMemory(t, from, f, mode)
					rows = append(rows, fmt.Sprintf("| %s | %s | cesd %s | %s | %.1f MiB |", sz.label, from, mode, outcome, float64(rss)/(1<<20)))
					if rss > peakRSSLimit {
						t.Errorf("peak RSS %.1f MiB, over %d MiB", float64(rss)/(1<<20), peakRSSLimit>>20)
					}
				})
			}
		}
	}
}

// peakMemory makes a first generation, applies f to op, runs one refresh in
// the given mode and returns what happened and the child's peak RSS.
func peakMemory(t *testing.T, op cestest.Op, f cestest.Fault, mode string) (string, int64) {
	// A short token TTL (under oauth2's 10 s early expiry) makes every
	// refresh ask IAM, so the daemon meets the IAM answer too.
	sim := cestest.NewServer(cestest.Options{Seed: 5, TokenTTL: 5 * time.Second})
	defer sim.Close()
	h := newHarness(t, sim, "", nil)
	first := exec.Command(cesdBin, "fetch")
	first.Env = h.env
	if out, err := first.CombinedOutput(); err != nil {
		t.Fatalf("first fetch: %v\n%s", err, out)
	}
	good, err := wallet.Verify(h.walletDir)
	if err != nil {
		t.Fatal(err)
	}
	sim.Rotate("all")
	sim.SetFault(op, f)

	var accepted bool
	var rss int64
	if mode == "fetch" {
		accepted, rss = fetchPeak(t, h.env)
	} else {
		from := h.start()
		e, _ := h.waitLog(from, 30*time.Second, "startup refresh", func(e logEntry) bool {
			return e.str("msg") == "new generation live" || strings.HasPrefix(e.str("msg"), "refresh failed")
		})
		accepted = e.str("msg") == "new generation live"
		// The high-water mark of the process's own memory since exec.
		kib, err := procStatusKiB(h.cur.cmd.Process.Pid, "VmHWM:")
		if err != nil {
			t.Fatal(err)
		}
		rss = kib << 10
		h.stop()
	}
	m, err := wallet.Verify(h.walletDir)
	if err != nil {
		t.Fatalf("after the oversized answer: %v", err)
	}
	outcome := "refused, generation kept"
	switch {
	case accepted && m.Generation > good.Generation:
		outcome = "accepted"
	case accepted:
		t.Errorf("accepted, yet generation %d is live (was %d)", m.Generation, good.Generation)
	case m.Generation != good.Generation:
		t.Errorf("refused, yet generation %d is live, not %d", m.Generation, good.Generation)
	}
	return outcome, rss
}
