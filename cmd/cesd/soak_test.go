//go:build soak

// The soak test runs the real cesd binary against the in-process simulator
// for CESD_SOAK_DURATION (default 1h; CI runs 10m) with a rotation every 2s,
// a 5s poll, random CES faults toggled on and off and a stream of bogus
// callbacks. It samples cesd's RSS, goroutines, open fds and generations on
// disk into a CSV, asserts they stay flat, and scans every log line cesd
// wrote for every secret the simulator ever issued.
//
//	go test -tags soak -run TestSoak -timeout 0 -v ./cmd/cesd
//	CESD_SOAK_DURATION=10m CESD_SOAK_OUT=/tmp/soak go test -tags soak ...
//
// scripts/soak.sh wraps this and plots the CSV with gnuplot.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
)

const (
	soakRotateEvery = 2 * time.Second
	soakPoll        = 5 * time.Second
	soakKeep        = 3
)

type soakSample struct {
	elapsed     time.Duration
	rssKiB      int64
	goroutines  int64
	fds         int64
	generations int64
	heapInuse   int64
	swaps       int64
	simGen      int64
}

func TestSoak(t *testing.T) {
	dur := time.Hour
	if v := os.Getenv("CESD_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CESD_SOAK_DURATION: %v", err)
		}
		dur = d
	}
	if dur < time.Minute {
		t.Fatalf("CESD_SOAK_DURATION %v: want at least 1m so that warm-up and quarters mean something", dur)
	}
	sampleEvery := 5 * time.Second
	if v := os.Getenv("CESD_SOAK_SAMPLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CESD_SOAK_SAMPLE: %v", err)
		}
		sampleEvery = d
	}
	out := os.Getenv("CESD_SOAK_OUT")
	if out == "" {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := soakBuild(t, work)

	clientSecret := "soak-secret-" + strconv.FormatUint(rand.Uint64(), 36)
	sim := cestest.NewServer(cestest.Options{ClientSecret: clientSecret, SendWalletPassword: true, CallbackTimeout: 2 * time.Second})
	defer sim.Close()

	secrets := newSoakSecrets()
	secrets.add(clientSecret)
	secrets.addGen(sim.Current())

	secretFile := filepath.Join(work, "client_secret")
	caFile := filepath.Join(work, "ces-ca.pem")
	soakMust(t, os.WriteFile(secretFile, []byte(clientSecret), 0o600))
	soakMust(t, os.WriteFile(caFile, sim.CACertPEM(), 0o600))
	walletDir := filepath.Join(work, "wallet")
	cbAddr, opsAddr := soakFreeAddr(t), soakFreeAddr(t)
	cbURL := "http://" + cbAddr + "/cesd/notify"
	logPath := filepath.Join(out, "cesd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	soakMust(t, err)
	defer logFile.Close()

	cmd := exec.Command(bin, "run",
		"--base-url", sim.URL, "--token-url", sim.TokenURL,
		"--client-id", "cestest-client", "--client-secret-file", secretFile, "--ca-file", caFile,
		"--wallet-dir", walletDir, "--keep-generations", strconv.Itoa(soakKeep),
		"--listen", cbAddr, "--callback-url", cbURL, "--metrics-listen", opsAddr,
		"--poll-interval", soakPoll.String(), "--register-interval", "15s", "--min-interval", "500ms",
		"--request-timeout", "3s",
		"--on-change", `test -n "$CESD_GENERATION"`,
		"--log-level", "debug", "--config", "")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	exited := soakStart(t, cmd)
	pid := cmd.Process.Pid

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer hc.CloseIdleConnections()
	if err := soakWaitReady(hc, "http://"+opsAddr+"/readyz", exited, time.Minute); err != nil {
		t.Fatalf("cesd never became ready: %v (log: %s)", err, logPath)
	}
	t.Logf("cesd pid %d ready; soaking for %v, sampling every %v, output in %s", pid, dur, sampleEvery, out)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	var faultsSet, noiseSent, rotations soakCounter
	wg.Add(3)
	go func() { defer wg.Done(); soakRotate(ctx, sim, secrets, &rotations) }()
	go func() { defer wg.Done(); soakFaults(ctx, sim, &faultsSet) }()
	go func() { defer wg.Done(); soakNoise(ctx, hc, cbAddr, &noiseSent) }()

	var samples []soakSample
	start := time.Now()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	early := false
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case err := <-exited:
			exited <- err
			early = true
			break sampling
		case <-tick.C:
			s, err := soakMeasure(hc, pid, opsAddr, walletDir)
			if err != nil {
				t.Logf("sample: %v", err)
				continue
			}
			s.elapsed = time.Since(start)
			s.simGen = int64(sim.Current().Number)
			samples = append(samples, s)
		}
	}
	cancel()
	wg.Wait()
	if early {
		err := <-exited
		exited <- err
		t.Fatalf("cesd exited during the soak: %v (log: %s)", err, logPath)
	}

	// Recovery: with every fault cleared, one more rotation must land.
	sim.ClearFaults()
	sim.Rotate("all")
	secrets.addGen(sim.Current())
	want := sim.Current()
	if err := soakWaitGeneration(walletDir, want.LastRotation, exited, 2*time.Minute); err != nil {
		t.Errorf("the final rotation never went live after faults cleared: %v", err)
	}

	soakMust(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err // for the deferred reaper
		if err != nil {
			t.Errorf("cesd exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("cesd did not exit within 30s of SIGTERM")
	}

	csvPath := filepath.Join(out, "soak.csv")
	soakMust(t, writeSoakCSV(csvPath, samples))
	t.Logf("rotations %d, faults toggled %d, bogus callbacks %d, samples %d; CSV %s",
		rotations.get(), faultsSet.get(), noiseSent.get(), len(samples), csvPath)

	soakCheckFlat(t, samples, dur)
	if last := samples[len(samples)-1]; last.swaps < int64(rotations.get())/10 {
		t.Errorf("only %d swaps for %d rotations: cesd did not keep up", last.swaps, rotations.get())
	}

	hits, scanned := secrets.scan(t, logPath)
	t.Logf("secret scan: %d secrets over %d bytes of log, %d hits", secrets.len(), scanned, hits)
	if hits != 0 {
		t.Errorf("%d secret occurrences in %s", hits, logPath)
	}
	summary := fmt.Sprintf("duration=%v samples=%d rotations=%d faults=%d noise=%d secrets=%d log_bytes=%d secret_hits=%d\n%s",
		dur, len(samples), rotations.get(), faultsSet.get(), noiseSent.get(), secrets.len(), scanned, hits, soakSummary(samples))
	soakMust(t, os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary), 0o600))
	t.Log("\n" + summary)
}

func soakMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type soakCounter struct {
	mu sync.Mutex
	n  int
}

func (c *soakCounter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *soakCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func soakBuild(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cesd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func soakFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	soakMust(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// soakUntil checks cond every tick until it holds, cesd exits, or limit
// passes: the binary is a separate process, so there is no channel to wait on.
func soakUntil(exited chan error, limit, tick time.Duration, cond func() (bool, string)) error {
	deadline := time.After(limit)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("cesd exited: %v", err)
		case <-deadline:
			return fmt.Errorf("after %v: %s", limit, state)
		case <-t.C:
		}
	}
}

// soakWaitReady polls /readyz until it answers 200.
func soakWaitReady(hc *http.Client, url string, exited chan error, limit time.Duration) error {
	return soakUntil(exited, limit, 100*time.Millisecond, func() (bool, string) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, "not ready: " + err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("not ready: HTTP %d", resp.StatusCode)
	})
}

// soakWaitGeneration polls manifest.json until the live generation is the
// one CES rotated to last.
func soakWaitGeneration(walletDir string, lastRotation time.Time, exited chan error, limit time.Duration) error {
	var seen time.Time
	return soakUntil(exited, limit, 200*time.Millisecond, func() (bool, string) {
		if b, err := os.ReadFile(filepath.Join(walletDir, "manifest.json")); err == nil {
			var m struct {
				LastRotationDate time.Time `json:"lastRotationDate"`
			}
			if json.Unmarshal(b, &m) == nil {
				seen = m.LastRotationDate
			}
		}
		return seen.UnixMilli() == lastRotation.UnixMilli(),
			fmt.Sprintf("live lastRotationDate %v, want %v", seen, lastRotation)
	})
}

// soakStart starts cesd and returns the channel its exit arrives on; the
// process is killed and reaped when the test ends, if it has not exited.
func soakStart(t *testing.T, cmd *exec.Cmd) chan error {
	t.Helper()
	soakMust(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-exited:
			exited <- err
		default:
			_ = cmd.Process.Kill()
			exited <- <-exited
		}
	})
	return exited
}

func soakRotate(ctx context.Context, sim *cestest.Server, secrets *soakSecrets, n *soakCounter) {
	changes := []string{"all", "credentials", "wallet"}
	tick := time.NewTicker(soakRotateEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sim.Rotate(changes[rand.IntN(len(changes))])
		secrets.addGen(sim.Current())
		n.inc()
	}
}

// soakFaults toggles: every few seconds it either clears all faults or sets
// one at random, so cesd spends about half its time against a broken CES.
func soakFaults(ctx context.Context, sim *cestest.Server, n *soakCounter) {
	type opFault struct {
		op cestest.Op
		f  cestest.Fault
	}
	var menu []opFault
	for _, f := range cestest.ProductFaults() {
		menu = append(menu, opFault{cestest.OpFetchCredentials, f})
	}
	menu = append(menu, []opFault{
		{cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status429}},
		{cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Latency, Latency: 500 * time.Millisecond}},
		{cestest.OpToken, cestest.Fault{Kind: cestest.Status500}},
		{cestest.OpToken, cestest.Fault{Kind: cestest.Hang}},
		{cestest.OpList, cestest.Fault{Kind: cestest.Status503}},
		{cestest.OpRegister, cestest.Fault{Kind: cestest.Status500}},
		{cestest.OpCallback, cestest.Fault{Kind: cestest.LoseCallbacks}},
	}...)
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sim.ClearFaults()
		if rand.IntN(2) == 0 {
			m := menu[rand.IntN(len(menu))]
			sim.SetFault(m.op, m.f)
			n.inc()
		}
	}
}

// soakNoise sends about ten bogus requests a second to the callback listener;
// one in ten is a well-formed forged callback.
func soakNoise(ctx context.Context, hc *http.Client, cbAddr string, n *soakCounter) {
	base := "http://" + cbAddr
	big := `{"usecase":"credentialRotation","pad":"` + strings.Repeat("A", 100<<10) + `"}`
	kinds := []struct{ method, path, body string }{
		{http.MethodPost, "/cesd/notify", `{"usecase":`},
		{http.MethodPost, "/cesd/notify", `{"usecase":"credentialRotationNotification","change":"all"}`},
		{http.MethodPost, "/cesd/notify", big},
		{http.MethodGet, "/cesd/notify", ""},
		{http.MethodPost, "/../etc/passwd", `{"usecase":"credentialRotation"}`},
		{http.MethodPost, "/metrics", ""},
		{http.MethodPut, "/cesd/notify", `{"usecase":"credentialRotation"}`},
		{http.MethodPost, "/cesd/notify", "\x00\xff\xfe"},
		{http.MethodPost, "/cesd/notify", `[1,2,3]`},
		{http.MethodPost, "/cesd/notify", `{"usecase":"credentialRotation","change":"all"}`},
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k := kinds[rand.IntN(len(kinds))]
		req, err := http.NewRequestWithContext(ctx, k.method, base+k.path, strings.NewReader(k.body))
		if err != nil {
			continue
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		n.inc()
	}
}

func soakMeasure(hc *http.Client, pid int, opsAddr, walletDir string) (soakSample, error) {
	var s soakSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = int64(len(fds))
	entries, err := os.ReadDir(walletDir)
	if err != nil {
		return s, err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "..") {
			s.generations++
		}
	}
	resp, err := hc.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			s.goroutines = int64(f)
		case "go_memstats_heap_inuse_bytes":
			s.heapInuse = int64(f)
		case "cesd_generation_swaps_total":
			s.swaps = int64(f)
		}
	}
	return s, sc.Err()
}

func writeSoakCSV(path string, samples []soakSample) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"elapsed_s", "rss_kib", "goroutines", "fds", "generations", "heap_inuse_bytes", "swaps", "sim_generation"})
	for _, s := range samples {
		_ = w.Write([]string{
			strconv.FormatFloat(s.elapsed.Seconds(), 'f', 1, 64),
			strconv.FormatInt(s.rssKiB, 10), strconv.FormatInt(s.goroutines, 10), strconv.FormatInt(s.fds, 10),
			strconv.FormatInt(s.generations, 10), strconv.FormatInt(s.heapInuse, 10),
			strconv.FormatInt(s.swaps, 10), strconv.FormatInt(s.simGen, 10),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}

// checkFlat drops a warm-up (the first tenth, at most 5 minutes), then
// compares the last quarter of the remaining samples with the first quarter.
func soakCheckFlat(t *testing.T, samples []soakSample, dur time.Duration) {
	t.Helper()
	warm := min(dur/10, 5*time.Minute)
	var steady []soakSample
	for _, s := range samples {
		if s.elapsed >= warm {
			steady = append(steady, s)
		}
		if s.generations > soakKeep+1 {
			t.Errorf("at %v: %d generation folders on disk, want <= keep_generations+1 = %d", s.elapsed.Round(time.Second), s.generations, soakKeep+1)
		}
	}
	if len(steady) < 8 {
		t.Fatalf("only %d samples after warm-up: too few to judge", len(steady))
	}
	q := len(steady) / 4
	first, last := steady[:q], steady[len(steady)-q:]
	avg := func(ss []soakSample, f func(soakSample) int64) float64 {
		var sum int64
		for _, s := range ss {
			sum += f(s)
		}
		return float64(sum) / float64(len(ss))
	}
	for _, m := range []struct {
		name  string
		get   func(soakSample) int64
		ratio float64 // last-quarter average may exceed first by this factor...
		slack float64 // ...plus this absolute amount
	}{
		{"RSS KiB", func(s soakSample) int64 { return s.rssKiB }, 1.20, 2048},
		{"goroutines", func(s soakSample) int64 { return s.goroutines }, 1.10, 5},
		{"open fds", func(s soakSample) int64 { return s.fds }, 1.10, 4},
		{"generations", func(s soakSample) int64 { return s.generations }, 1.0, 1},
	} {
		a, b := avg(first, m.get), avg(last, m.get)
		t.Logf("%-12s first quarter avg %.1f, last quarter avg %.1f", m.name, a, b)
		if b > a*m.ratio+m.slack {
			t.Errorf("%s grew: first-quarter average %.1f, last-quarter average %.1f (limit %.1f)", m.name, a, b, a*m.ratio+m.slack)
		}
	}
}

func soakSummary(samples []soakSample) string {
	if len(samples) == 0 {
		return "no samples"
	}
	type mm struct{ lo, hi int64 }
	r := map[string]*mm{}
	order := []string{"rss_kib", "goroutines", "fds", "generations", "heap_inuse_bytes"}
	for _, s := range samples {
		for i, v := range []int64{s.rssKiB, s.goroutines, s.fds, s.generations, s.heapInuse} {
			k := order[i]
			if r[k] == nil {
				r[k] = &mm{v, v}
			}
			r[k].lo, r[k].hi = min(r[k].lo, v), max(r[k].hi, v)
		}
	}
	var b strings.Builder
	for _, k := range order {
		fmt.Fprintf(&b, "%s min=%d max=%d\n", k, r[k].lo, r[k].hi)
	}
	last := samples[len(samples)-1]
	fmt.Fprintf(&b, "swaps=%d sim_generation=%d\n", last.swaps, last.simGen)
	return b.String()
}

// soakSecrets holds every secret the simulator issued during the soak.
type soakSecrets struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func newSoakSecrets() *soakSecrets { return &soakSecrets{m: map[string]struct{}{}} }

func (s *soakSecrets) add(v string) {
	if len(v) < 6 { // too short to scan for without false hits; the simulator's are longer
		return
	}
	s.mu.Lock()
	s.m[v] = struct{}{}
	s.mu.Unlock()
}

func (s *soakSecrets) addGen(g cestest.Generation) {
	s.add(g.WalletPassword)
	for _, pw := range g.Schemas {
		s.add(pw)
	}
}

func (s *soakSecrets) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *soakSecrets) scan(t *testing.T, path string) (hits int, size int) {
	t.Helper()
	b, err := os.ReadFile(path)
	soakMust(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.m {
		if n := bytes.Count(b, []byte(v)); n > 0 {
			hits += n
			t.Errorf("a secret (%d chars) appears %d times in the log", len(v), n)
		}
	}
	return hits, len(b)
}
