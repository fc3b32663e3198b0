//go:build reliability

// Reliability evidence against the real cesd binary (issue 7 parts 1 and 2):
// crash consistency under SIGKILL, a full disk, and the CES/IAM fault matrix.
// The binary is built once; the CES simulator runs in this process; cesd runs
// as a child configured through CESD_* env. See docs/reliability.md.
//
//	go test -tags reliability -count=1 -timeout 20m -parallel 20 -run Reliability ./cmd/cesd
//
// Knobs: CESD_CRASH_KILLS (default 200), CESD_FAULT_WINDOW (default 5s),
// CESD_RELIABILITY_REPORT (a file the figures are appended to, as markdown).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

var cesdBin string // built once by TestMain

func TestMain(m *testing.M) {
	if os.Getenv(readerEnv) != "" {
		os.Exit(m.Run()) // the reader process: no binary needed
	}
	if code, ok := childMode(); ok {
		os.Exit(code) // a reader of readers_test.go, as another user
	}
	dir, err := os.MkdirTemp("", "cesd-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cesdBin = filepath.Join(dir, "cesd")
	// The binary under test is the flavour this test was built as: with
	// -tags fleet, the fleet build.
	build := []string{"build", "-o", cesdBin}
	if fleetBuilt {
		build = append(build, "-tags", "fleet")
	}
	out, err := exec.Command("go", append(build, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------- harness: logs, child process, metrics ----------

// logBuf collects cesd's JSON log lines across restarts; waiters are woken
// on every line, so tests wait on events, not on the clock.
type logBuf struct {
	mu      sync.Mutex
	entries []logEntry
	changed chan struct{}
}

type logEntry struct {
	at     time.Time
	proc   int // which start of cesd wrote it
	fields map[string]any
	raw    string
}

func (e logEntry) str(k string) string { s, _ := e.fields[k].(string); return s }

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (l *logBuf) add(proc int, line string) {
	e := logEntry{at: time.Now(), proc: proc, raw: line}
	if err := json.Unmarshal([]byte(line), &e.fields); err != nil {
		e.fields = map[string]any{"msg": line, "level": "unparsed"}
	}
	l.mu.Lock()
	l.entries = append(l.entries, e)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *logBuf) len() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.entries) }

func (l *logBuf) all() []logEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logEntry(nil), l.entries...)
}

// waitFor returns the first entry at index >= from that matches, or false
// after timeout.
func (l *logBuf) waitFor(from int, timeout time.Duration, match func(logEntry) bool) (logEntry, int, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.entries); i++ {
			if match(l.entries[i]) {
				e := l.entries[i]
				l.mu.Unlock()
				return e, i, true
			}
		}
		from = len(l.entries)
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return logEntry{}, 0, false
		}
	}
}

func msgIs(msg string) func(logEntry) bool {
	return func(e logEntry) bool { return e.str("msg") == msg }
}

// child is one cesd run process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when stderr is drained and the process reaped
	err  error
}

type harness struct {
	t           *testing.T
	sim         *cestest.Server
	dir         string // scratch
	walletDir   string
	metricsAddr string
	env         []string
	logs        *logBuf
	starts      int
	cur         *child
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newHarness prepares env for cesd against sim; extra overrides defaults.
func newHarness(t *testing.T, sim *cestest.Server, walletDir string, extra map[string]string) *harness {
	t.Helper()
	dir := t.TempDir()
	if walletDir == "" {
		walletDir = filepath.Join(dir, "wallet")
	}
	ca := filepath.Join(dir, "ca.pem")
	secret := filepath.Join(dir, "client_secret")
	if err := os.WriteFile(ca, sim.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("cestest-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sim: sim, dir: dir, walletDir: walletDir, metricsAddr: freeAddr(t), logs: newLogBuf()}
	cfg := map[string]string{
		"BASE_URL":           sim.URL,
		"TOKEN_URL":          sim.TokenURL,
		"CLIENT_ID":          "cestest-client",
		"CLIENT_SECRET_FILE": secret,
		"CA_FILE":            ca,
		"WALLET_DIR":         walletDir,
		"METRICS_LISTEN":     h.metricsAddr,
		"POLL_INTERVAL":      "1h",
		"MIN_INTERVAL":       "1s",
		"REQUEST_TIMEOUT":    "2s",
		"REGISTER_INTERVAL":  "1h",
		"LOG_LEVEL":          "debug",
		"KEEP_GENERATIONS":   "3",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CESD_") {
			h.env = append(h.env, kv)
		}
	}
	for k, v := range cfg {
		h.env = append(h.env, "CESD_"+k+"="+v)
	}
	t.Cleanup(func() {
		if h.cur != nil {
			h.kill()
		}
		if t.Failed() {
			h.dumpLogs(40)
		} else if os.Getenv("CESD_RELIABILITY_VERBOSE") != "" {
			h.dumpLogs(1 << 30)
		}
	})
	return h
}

func (h *harness) dumpLogs(n int) {
	all := h.logs.all()
	if len(all) > n {
		all = all[len(all)-n:]
	}
	for _, e := range all {
		h.t.Logf("cesd[%d]: %s", e.proc, e.raw)
	}
}

// start runs `cesd run` and returns the log index its lines start at.
func (h *harness) start() int {
	h.t.Helper()
	if h.cur != nil {
		h.t.Fatal("cesd already running")
	}
	h.starts++
	proc := h.starts
	from := h.logs.len()
	cmd := exec.Command(cesdBin, "run")
	cmd.Env = h.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			h.logs.add(proc, sc.Text())
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	h.cur = c
	return from
}

func (h *harness) signal(sig syscall.Signal) {
	h.t.Helper()
	if err := h.cur.cmd.Process.Signal(sig); err != nil {
		h.t.Fatalf("signal %v: %v", sig, err)
	}
}

// kill SIGKILLs cesd and reaps it.
func (h *harness) kill() {
	_ = h.cur.cmd.Process.Kill()
	<-h.cur.done
	h.cur = nil
}

// stop SIGTERMs cesd and requires a clean exit.
func (h *harness) stop() {
	h.t.Helper()
	h.signal(syscall.SIGTERM)
	select {
	case <-h.cur.done:
	case <-time.After(30 * time.Second):
		h.kill()
		h.t.Fatal("cesd did not stop on SIGTERM")
	}
	if err := h.cur.err; err != nil {
		h.t.Errorf("cesd exit: %v", err)
	}
	h.cur = nil
}

// waitLog fails the test if no matching line appears in time.
func (h *harness) waitLog(from int, timeout time.Duration, what string, match func(logEntry) bool) (logEntry, int) {
	h.t.Helper()
	e, i, ok := h.logs.waitFor(from, timeout, match)
	if !ok {
		h.dumpLogs(30)
		h.t.Fatalf("no log line %s within %s", what, timeout)
	}
	return e, i
}

// metrics scrapes /metrics into "name{labels}" -> value, labels sorted as
// Prometheus prints them.
func (h *harness) metrics() map[string]float64 {
	h.t.Helper()
	resp, err := http.Get("http://" + h.metricsAddr + "/metrics")
	if err != nil {
		h.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds every series of name whose labels include all of want.
func sum(m map[string]float64, name string, want ...string) float64 {
	var s float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(k, w) {
				ok = false
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

// checkMatchesSim requires the live generation to be sim's current one:
// wallet files byte-equal (derived ones only flagged; a sent file kept under
// another name, such as Oracle's ewallet.pem as ewallet.sent.pem, compared
// with what CES sent under its sentAs name), schemas equal.
func checkMatchesSim(t *testing.T, dir string, g cestest.Generation) *wallet.Manifest {
	t.Helper()
	m, err := wallet.Verify(dir)
	if err != nil {
		t.Fatalf("wallet.Verify: %v", err)
	}
	if !m.LastRotationDate.Equal(g.LastRotation) {
		t.Errorf("live generation %d has lastRotationDate %v, simulator's newest (%d) has %v",
			m.Generation, m.LastRotationDate, g.Number, g.LastRotation)
	}
	live := filepath.Join(dir, "..data")
	for name, fi := range m.Files {
		sentName := name
		if fi.SentAs != "" {
			sentName = fi.SentAs
		}
		want, sent := g.Files[sentName]
		if !sent {
			if !fi.Derived {
				t.Errorf("%s: on disk, not sent by CES, not flagged derived", name)
			}
			continue
		}
		got, err := os.ReadFile(filepath.Join(live, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Derived {
			continue // sqlnet.ora rewritten; flagged with its source hash
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what CES sent", name)
		}
	}
	for name := range g.Files {
		if _, ok := m.Files[name]; !ok {
			t.Errorf("%s sent by CES, missing on disk", name)
		}
	}
	b, err := os.ReadFile(filepath.Join(live, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	var creds map[string]string
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatalf("credentials.json: %v", err)
	}
	if len(creds) != len(g.Schemas) {
		t.Errorf("credentials.json has %d schemas, CES sent %d", len(creds), len(g.Schemas))
	}
	for s, pw := range g.Schemas {
		if creds[s] != pw {
			t.Errorf("credentials.json: schema %s password is not the newest", s)
		}
	}
	return m
}

// leftovers lists entries of a wallet folder that are not part of the
// contract: ..data, at most keep generation folders, and the live stable links.
func leftovers(dir string, m *wallet.Manifest, keep int) []string {
	want := map[string]bool{"..data": true, "credentials.json": true, "schemas": true, "manifest.json": true}
	for name := range m.Files {
		want[name] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{err.Error()}
	}
	var bad []string
	gens := 0
	for _, e := range ents {
		name := e.Name()
		if want[name] {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "..")); err == nil && strings.HasPrefix(name, "..") {
			gens++
			if n > int(m.Generation) {
				bad = append(bad, name+" (newer than live)")
			}
			continue
		}
		bad = append(bad, name)
	}
	if gens > keep {
		bad = append(bad, fmt.Sprintf("%d generation folders, keep_generations is %d", gens, keep))
	}
	return bad
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// report appends markdown to CESD_RELIABILITY_REPORT when set, and logs it.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	t.Log(s)
	if path := os.Getenv("CESD_RELIABILITY_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, s)
	}
}

// ---------- the reader process ----------

const (
	readerEnv     = "CESD_REL_READER_DIR"
	readerStopEnv = "CESD_REL_READER_STOP"
	readerOutEnv  = "CESD_REL_READER_OUT"
)

// readerResult is what the reader process reports.
type readerResult struct {
	GenerationReads int      `json:"generation_reads"` // complete generation read sets checked
	LinkReads       int      `json:"link_reads"`       // stable links read and checked
	PrunedRetries   int      `json:"pruned_retries"`   // generation pruned under the reader: retried, not torn
	LinkVanished    int      `json:"link_vanished"`    // a stable link absent between listing and opening
	NoWallet        int      `json:"no_wallet"`        // before the first generation
	Generations     int      `json:"generations_seen"` // distinct generations read
	Torn            int      `json:"torn"`
	TornSamples     []string `json:"torn_samples,omitempty"`
}

// TestReliabilityReaderProcess is the reader: it only runs when re-executed
// by TestReliabilityCrashConsistency with readerEnv set.
func TestReliabilityReaderProcess(t *testing.T) {
	dir := os.Getenv(readerEnv)
	if dir == "" {
		t.Skip("runs only as the reader child process")
	}
	r := &reader{dir: dir, known: map[string]map[string]bool{}, seen: map[string]bool{}}
	stop := os.Getenv(readerStopEnv)
	for i := 0; ; i++ {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		r.readGeneration()
		r.readLinks()
		if i%8 == 0 {
			time.Sleep(100 * time.Microsecond) // leave the 2 CPUs to cesd now and then
		}
	}
	r.res.Generations = len(r.seen)
	b, _ := json.Marshal(r.res)
	if err := os.WriteFile(os.Getenv(readerOutEnv), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type reader struct {
	dir      string
	res      readerResult
	known    map[string]map[string]bool // file name -> sha256s seen in any manifest
	seen     map[string]bool
	everLive bool
}

func (r *reader) torn(format string, args ...any) {
	r.res.Torn++
	if len(r.res.TornSamples) < 20 {
		r.res.TornSamples = append(r.res.TornSamples, fmt.Sprintf(format, args...))
	}
}

func (r *reader) live() string {
	t, _ := os.Readlink(filepath.Join(r.dir, "..data"))
	return t
}

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func (r *reader) learn(m *wallet.Manifest) {
	for name, fi := range m.Files {
		if r.known[name] == nil {
			r.known[name] = map[string]bool{}
		}
		r.known[name][fi.SHA256] = true
	}
}

// readGeneration resolves ..data once and checks everything in that folder.
func (r *reader) readGeneration() {
	gen, err := os.Readlink(filepath.Join(r.dir, "..data"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !r.everLive {
			r.res.NoWallet++
			return
		}
		r.torn("readlink ..data: %v", err)
		return
	}
	r.everLive = true
	gdir := filepath.Join(r.dir, gen)
	// gone reports a read failure that is a prune under us: the folder is
	// no longer live, so cesd may delete it. A missing file in the live
	// generation is torn.
	gone := func(err error) bool {
		if errors.Is(err, fs.ErrNotExist) && r.live() != gen {
			r.res.PrunedRetries++
			return true
		}
		return false
	}
	mb, err := os.ReadFile(filepath.Join(gdir, "manifest.json"))
	if err != nil {
		if !gone(err) {
			r.torn("%s/manifest.json: %v", gen, err)
		}
		return
	}
	var m wallet.Manifest
	if err := json.Unmarshal(mb, &m); err != nil || len(m.Files) == 0 {
		r.torn("%s/manifest.json: unparsable or empty (%d bytes): %v", gen, len(mb), err)
		return
	}
	if gen == "..data" || fmt.Sprintf("..%d", m.Generation) != gen {
		r.torn("%s/manifest.json says generation %d", gen, m.Generation)
	}
	r.learn(&m)
	for name, fi := range m.Files {
		b, err := os.ReadFile(filepath.Join(gdir, name))
		if err != nil {
			if !gone(err) {
				r.torn("%s/%s: %v", gen, name, err)
			}
			return
		}
		if int64(len(b)) != fi.Size || sha(b) != fi.SHA256 {
			r.torn("%s/%s: %d bytes, sha256 %s; manifest says %d bytes, %s", gen, name, len(b), sha(b)[:12], fi.Size, fi.SHA256[:12])
			return
		}
	}
	cb, err := os.ReadFile(filepath.Join(gdir, "credentials.json"))
	if err != nil {
		if !gone(err) {
			r.torn("%s/credentials.json: %v", gen, err)
		}
		return
	}
	var creds map[string]string
	if err := json.Unmarshal(cb, &creds); err != nil || len(creds) != len(m.Schemas) {
		r.torn("%s/credentials.json: %d schemas (%v), manifest lists %d", gen, len(creds), err, len(m.Schemas))
		return
	}
	for _, s := range m.Schemas {
		pw, err := os.ReadFile(filepath.Join(gdir, "schemas", s))
		if err != nil {
			if !gone(err) {
				r.torn("%s/schemas/%s: %v", gen, s, err)
			}
			return
		}
		if string(pw) != creds[s] || len(pw) == 0 {
			r.torn("%s/schemas/%s disagrees with credentials.json", gen, s)
			return
		}
	}
	r.res.GenerationReads++
	r.seen[gen] = true
}

// rescan learns the manifests of every generation folder on disk.
func (r *reader) rescan() {
	ents, _ := os.ReadDir(r.dir)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "..") || e.Name() == "..data" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name(), "manifest.json"))
		var m wallet.Manifest
		if err == nil && json.Unmarshal(b, &m) == nil {
			r.learn(&m)
		}
	}
}

// readLinks opens each stable top-level link on its own: it must be complete
// (non-empty, and for wallet files equal to some manifest's entry).
func (r *reader) readLinks() {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		r.torn("list wallet folder: %v", err)
		return
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		path := filepath.Join(r.dir, name)
		if name == "schemas" {
			sub, err := os.ReadDir(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					r.res.LinkVanished++
				} else {
					r.torn("schemas/: %v", err)
				}
				continue
			}
			for _, s := range sub {
				b, err := os.ReadFile(filepath.Join(path, s.Name()))
				if err == nil && len(b) == 0 {
					r.torn("schemas/%s through the stable link: empty", s.Name())
				}
				r.res.LinkReads++
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				r.res.LinkVanished++
			} else {
				r.torn("%s through the stable link: %v", name, err)
			}
			continue
		}
		r.res.LinkReads++
		if len(b) == 0 {
			r.torn("%s through the stable link: empty", name)
			continue
		}
		switch name {
		case "manifest.json", "credentials.json":
			if !json.Valid(b) {
				r.torn("%s through the stable link: not JSON (%d bytes)", name, len(b))
			}
			continue
		}
		h := sha(b)
		if !r.known[name][h] {
			r.rescan()
		}
		if !r.known[name][h] {
			r.torn("%s through the stable link: %d bytes, sha256 %s in no manifest", name, len(b), h[:12])
		}
	}
}

// ---------- 1. crash consistency ----------

// killState classifies what SIGKILL interrupted, from what it left on disk.
func killState(dir string) string {
	live, _ := os.Readlink(filepath.Join(dir, "..data"))
	liveN, _ := strconv.Atoi(strings.TrimPrefix(live, ".."))
	ents, _ := os.ReadDir(dir)
	var dataTmp, linkTmp bool
	unfinished := ""
	gens := 0
	for _, e := range ents {
		switch name := e.Name(); {
		case name == "..data_tmp":
			dataTmp = true
		case name == "..link_tmp":
			linkTmp = true
		case strings.HasPrefix(name, "..") && name != "..data":
			n, err := strconv.Atoi(name[2:])
			if err == nil {
				gens++
				if n > liveN {
					unfinished = name
				}
			}
		}
	}
	m, err := wallet.ReadManifest(dir)
	missingLink := false
	if err == nil {
		for name := range m.Files {
			if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
				missingLink = true
			}
		}
	}
	switch {
	case live == "":
		return "before the first generation"
	case unfinished != "":
		if complete(filepath.Join(dir, unfinished)) {
			return "steps 5-6: new generation complete, not yet swapped"
		}
		return "steps 3-4: new generation half written"
	case dataTmp:
		return "step 6: ..data_tmp left"
	case linkTmp || missingLink:
		return "step 8: stable links half made"
	case gens > 3:
		return "steps 7-9: swapped, old generation not yet pruned"
	}
	return "between writes (clean)"
}

// complete reports whether a generation folder holds its manifest and every
// file it lists, at the listed size.
func complete(gdir string) bool {
	b, err := os.ReadFile(filepath.Join(gdir, "manifest.json"))
	var m wallet.Manifest
	if err != nil || json.Unmarshal(b, &m) != nil {
		return false
	}
	for name, fi := range m.Files {
		st, err := os.Stat(filepath.Join(gdir, name))
		if err != nil || st.Size() != fi.Size {
			return false
		}
	}
	_, err = os.Stat(filepath.Join(gdir, "credentials.json"))
	return err == nil
}

func TestReliabilityCrashConsistency(t *testing.T) {
	kills := envInt("CESD_CRASH_KILLS", 200)
	maxDelay := envDuration("CESD_CRASH_MAX_DELAY", 250*time.Millisecond)
	sim := cestest.NewServer(cestest.Options{Seed: 7, SendWalletPassword: true})
	defer sim.Close()
	listen := freeAddr(t)
	h := newHarness(t, sim, "", map[string]string{
		"LISTEN":        listen,
		"CALLBACK_URL":  "http://" + listen + "/cesd/notify",
		"POLL_INTERVAL": "1s",
		// 0s would be taken as the 1s default by the daemon.
		"MIN_INTERVAL": "1ms",
	})

	// A first generation, so the reader has a wallet from the start.
	from := h.start()
	h.waitLog(from, 30*time.Second, "new generation live", msgIs("new generation live"))
	h.kill()

	stop := filepath.Join(h.dir, "reader.stop")
	out := filepath.Join(h.dir, "reader.json")
	rd := exec.Command(os.Args[0], "-test.run=^TestReliabilityReaderProcess$", "-test.count=1")
	rd.Env = append(os.Environ(), readerEnv+"="+h.walletDir, readerStopEnv+"="+stop, readerOutEnv+"="+out, "GOMAXPROCS=1")
	rd.Stdout, rd.Stderr = os.Stderr, os.Stderr
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- rd.Wait() }()
	defer func() {
		if rd.ProcessState == nil {
			_ = rd.Process.Kill()
		}
	}()

	// Rotate continuously, alternating change kinds, until the kills are done.
	rotStop := make(chan struct{})
	rotDone := make(chan int)
	go func() {
		changes := []string{"all", "credentials", "wallet"}
		n := 0
		for {
			select {
			case <-rotStop:
				rotDone <- n
				return
			default:
			}
			sim.Rotate(changes[n%len(changes)])
			n++
			time.Sleep(time.Duration(rand.Int64N(int64(10 * time.Millisecond))))
		}
	}()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	states := map[string]int{}
	start := time.Now()
	for k := 0; k < kills; k++ {
		from := h.start()
		// The first log line means the process is up: kill from there, at a
		// uniform time that covers startup recovery and several fetch+write
		// cycles driven by callbacks and polls.
		h.waitLog(from, 30*time.Second, "from the new process", func(logEntry) bool { return true })
		time.Sleep(time.Duration(rng.Int64N(int64(maxDelay))))
		h.kill()
		states[killState(h.walletDir)]++
	}
	close(rotStop)
	rotations := <-rotDone
	elapsed := time.Since(start)

	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-readerDone; err != nil {
		t.Fatalf("reader process: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res readerResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}

	// One more start: it must clean up and catch up with the newest rotation.
	from = h.start()
	want := sim.Current()
	h.waitLog(from, 30*time.Second, "startup fetch done", func(e logEntry) bool {
		return e.str("msg") == "new generation live" || e.str("msg") == "live generation is current"
	})
	h.stop()
	m := checkMatchesSim(t, h.walletDir, want)
	left := leftovers(h.walletDir, m, 3)
	if len(left) > 0 {
		t.Errorf("leftovers after restart: %v", left)
	}
	swaps := 0
	var fetchD, writeD, upD []float64
	firstLine := map[int]time.Time{}
	for _, e := range h.logs.all() {
		if _, ok := firstLine[e.proc]; !ok {
			firstLine[e.proc] = e.at
		}
		if e.str("msg") == "new generation live" {
			swaps++
			f, _ := e.fields["fetch_duration"].(float64)
			w, _ := e.fields["write_duration"].(float64)
			fetchD, writeD = append(fetchD, f*1000), append(writeD, w*1000)
			if e.str("trigger") == "startup" {
				upD = append(upD, float64(e.at.Sub(firstLine[e.proc]).Microseconds())/1000)
			}
		}
	}
	report(t, "swaps: median fetch %.1f ms, median write %.1f ms, p90 write %.1f ms; first line to startup swap: median %.1f ms",
		quantile(fetchD, 0.5), quantile(writeD, 0.5), quantile(writeD, 0.9), quantile(upD, 0.5))

	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var hist strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&hist, "| %s | %d |\n", k, states[k])
	}
	report(t, "crash consistency: %d SIGKILLs in %s, %d rotations, %d generations made live, final generation %d = simulator generation %d\n"+
		"reader: %d generation read sets, %d stable-link reads, %d distinct generations, %d pruned retries, %d vanished links, torn states: %d\n"+
		"leftovers after restart: %d\n\n| state left by SIGKILL | kills |\n|---|---|\n%s",
		kills, elapsed.Round(time.Second), rotations, swaps, m.Generation, want.Number,
		res.GenerationReads, res.LinkReads, res.Generations, res.PrunedRetries, res.LinkVanished, res.Torn,
		len(left), hist.String())
	if res.Torn != 0 {
		t.Errorf("%d torn states; samples: %q", res.Torn, res.TornSamples)
	}
	if res.GenerationReads == 0 || res.LinkReads == 0 {
		t.Errorf("the reader checked nothing: %+v", res)
	}
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[int(q*float64(len(v)-1))]
}

// ---------- 2. disk full ----------

func TestReliabilityDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	sim := cestest.NewServer(cestest.Options{Seed: 11, SendWalletPassword: true})
	defer sim.Close()
	walletDir := filepath.Join(mnt, "wallet")
	h := newHarness(t, sim, walletDir, nil)
	from := h.start()
	h.waitLog(from, 30*time.Second, "first generation", msgIs("new generation live"))
	old, err := wallet.Verify(walletDir)
	if err != nil {
		t.Fatal(err)
	}
	genBytes := dirUsage(t, filepath.Join(walletDir, fmt.Sprintf("..%d", old.Generation)))

	// Fill the tmpfs so that about half a generation still fits.
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-genBytes/2), 0o600); err != nil {
		t.Fatalf("filler: %v", err)
	}

	sim.Rotate("wallet")
	at := h.logs.len()
	h.signal(syscall.SIGHUP)
	e, _ := h.waitLog(at, 30*time.Second, "write failure", msgIs("refresh failed; the last good generation stays live"))
	if e.str("stage") != "write" || !strings.Contains(e.str("error"), "no space left on device") {
		t.Errorf("logged %s; want stage write and ENOSPC", e.raw)
	}
	m, err := wallet.Verify(walletDir)
	if err != nil || m.Generation != old.Generation {
		t.Fatalf("after ENOSPC: live generation %v, err %v; want %d intact", m, err, old.Generation)
	}
	if left := leftovers(walletDir, m, 3); len(left) > 0 {
		t.Errorf("after the failed write: %v", left)
	}
	metrics := h.metrics()
	if n := sum(metrics, "cesd_refresh_errors_total", `kind="write"`); n < 1 {
		t.Errorf("cesd_refresh_errors_total{kind=\"write\"} = %v", n)
	}

	// Make room: cesd's own retry must succeed, no signal needed.
	at = h.logs.len()
	freed := time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h.waitLog(at, 10*time.Minute, "recovery", msgIs("new generation live"))
	recovered := time.Since(freed)
	got := checkMatchesSim(t, walletDir, sim.Current())
	h.stop()
	if left := leftovers(walletDir, got, 3); len(left) > 0 {
		t.Errorf("after recovery: %v", left)
	}
	report(t, "disk full: tmpfs 2 MiB, generation %d bytes, filler left %d bytes free; error logged: %q; generation %d stayed live and verified; recovered to generation %d %s after the filler was removed",
		genBytes, genBytes/2, e.str("error"), old.Generation, got.Generation, recovered.Round(10*time.Millisecond))
}

// dirUsage is the space a folder takes, in allocated blocks.
func dirUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// ---------- 3. fault matrix ----------

type faultCase struct {
	name    string
	iam     bool // the fault is on the token endpoint (short token TTL)
	op      cestest.Op
	fault   cestest.Fault
	tls     bool   // serve an untrusted certificate instead of a fault
	kind    string // cesd_refresh_errors_total kind label
	logOp   string // "op" field of the warning, "" when a local stage failed
	stage   string // "stage" field of the warning for local failures
	code    string // cesd_ces_requests_total code label that must move, "" to skip
	hint    string // substring of the logged hint (or error for local stages)
	minWait time.Duration
}

func faultCases() []faultCase {
	fc := cestest.OpFetchCredentials
	tk := cestest.OpToken
	f := func(k cestest.FaultKind) cestest.Fault { return cestest.Fault{Kind: k} }
	return []faultCase{
		{name: "ces_401", op: fc, fault: f(cestest.Status401), kind: "unauthorized", logOp: "fetch-credentials", code: "401", hint: "client_id/client_secret"},
		{name: "ces_403", op: fc, fault: f(cestest.Status403), kind: "forbidden", logOp: "fetch-credentials", code: "403", hint: "support ticket"},
		{name: "ces_404", op: fc, fault: f(cestest.Status404), kind: "not_found", logOp: "fetch-credentials", code: "404", hint: "base_url"},
		{name: "ces_429_retry_after", op: fc, fault: cestest.Fault{Kind: cestest.Status429, RetryAfter: 3 * time.Second}, kind: "rate_limited", logOp: "fetch-credentials", code: "429", hint: "Retry-After", minWait: 3 * time.Second},
		{name: "ces_429", op: fc, fault: f(cestest.Status429), kind: "rate_limited", logOp: "fetch-credentials", code: "429", hint: "rate limit"},
		{name: "ces_500", op: fc, fault: f(cestest.Status500), kind: "server_error", logOp: "fetch-credentials", code: "500", hint: "server error"},
		{name: "ces_503", op: fc, fault: f(cestest.Status503), kind: "server_error", logOp: "fetch-credentials", code: "503", hint: "server error"},
		{name: "ces_200_error", op: fc, fault: f(cestest.OK200Error), kind: "upstream_error", logOp: "fetch-credentials", code: "200", hint: "upstream"},
		{name: "ces_hang", op: fc, fault: f(cestest.Hang), kind: "timeout", logOp: "fetch-credentials", hint: "timeout"},
		{name: "ces_truncated", op: fc, fault: f(cestest.Truncated), kind: "bad_response", logOp: "fetch-credentials", hint: "truncated"},
		{name: "ces_bad_json", op: fc, fault: f(cestest.BadJSON), kind: "bad_response", logOp: "fetch-credentials", code: "200", hint: "malformed"},
		{name: "ces_bad_base64", op: fc, fault: f(cestest.BadBase64), kind: "decode", stage: "decode", code: "200", hint: "base64"},
		{name: "ces_hostile_name", op: fc, fault: f(cestest.HostileName), kind: "decode", stage: "decode", code: "200", hint: "name"},
		{name: "ces_empty_wallet", op: fc, fault: f(cestest.EmptyWallet), kind: "validate", stage: "validate", code: "200", hint: "has no files"},
		{name: "iam_401_wrong_secret", iam: true, op: tk, fault: f(cestest.Status401), kind: "unauthorized", logOp: "token", code: "401", hint: "IAM rejected the client"},
		{name: "iam_429_retry_after", iam: true, op: tk, fault: cestest.Fault{Kind: cestest.Status429, RetryAfter: 2 * time.Second}, kind: "rate_limited", logOp: "token", code: "429", hint: "IAM rate limit", minWait: time.Minute},
		{name: "iam_429", iam: true, op: tk, fault: f(cestest.Status429), kind: "rate_limited", logOp: "token", code: "429", hint: "IAM rate limit", minWait: time.Minute},
		{name: "iam_hang", iam: true, op: tk, fault: f(cestest.Hang), kind: "timeout", logOp: "token", hint: "timeout"},
		{name: "tls_untrusted_ca", iam: true, tls: true, kind: "network_error", logOp: "token", code: "error", hint: "certificate"},
	}
}

// maxAttempts is what the policy allows in a window: the first attempt,
// then at most one per floor, where the floor is min_interval (1s, which
// also bounds retries: full jitter may draw a backoff near 0), a server's
// Retry-After, or IAM's one-minute pause after a 429; plus one attempt in
// flight at the window's edge.
func maxAttempts(window, floor time.Duration) int {
	if floor < time.Second {
		floor = time.Second
	}
	return 2 + int(window/floor)
}

func TestReliabilityFaultMatrix(t *testing.T) {
	window := envDuration("CESD_FAULT_WINDOW", 5*time.Second)
	var mu sync.Mutex
	var rows []string
	t.Cleanup(func() {
		sort.Strings(rows)
		report(t, "fault matrix (window %s):\n\n| fault | error class logged | metrics moved | attempts (CES/IAM calls) in window | allowed | generation | time to recover |\n|---|---|---|---|---|---|---|\n%s",
			window, strings.Join(rows, "\n"))
	})
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := runFault(t, tc, window)
			mu.Lock()
			rows = append(rows, row)
			mu.Unlock()
		})
	}
}

func runFault(t *testing.T, tc faultCase, window time.Duration) string {
	opts := cestest.Options{Seed: 3, SendWalletPassword: true}
	if tc.iam {
		opts.TokenTTL = 5 * time.Second // under oauth2's 10s early expiry: a token per fetch
	}
	sim := cestest.NewServer(opts)
	defer sim.Close()
	h := newHarness(t, sim, "", nil)
	from := h.start()
	h.waitLog(from, 30*time.Second, "first generation", msgIs("new generation live"))
	good, err := wallet.Verify(h.walletDir)
	if err != nil {
		t.Fatal(err)
	}
	before := h.metrics()
	callsFC, callsTok := sim.Calls(cestest.OpFetchCredentials), sim.Calls(cestest.OpToken)

	// Fault on, then a rotation CES cannot deliver and a SIGHUP to fetch it.
	if tc.tls {
		sim.ServeUntrustedCertificate(true)
	} else {
		sim.SetFault(tc.op, tc.fault)
	}
	sim.Rotate("all")
	at := h.logs.len()
	faultStart := time.Now()
	h.signal(syscall.SIGHUP)
	warn, _ := h.waitLog(at, 30*time.Second, "refresh failure", msgIs("refresh failed; the last good generation stays live"))
	// More triggers during the fault must not add calls beyond the backoff.
	h.signal(syscall.SIGHUP)
	time.Sleep(window - time.Since(faultStart)) // the observation window itself is the measurement
	h.signal(syscall.SIGHUP)
	midFC, midTok := sim.Calls(cestest.OpFetchCredentials), sim.Calls(cestest.OpToken)
	during := h.metrics()

	m, err := wallet.Verify(h.walletDir)
	if err != nil || m.Generation != good.Generation {
		t.Errorf("during the fault: live generation %v (err %v), want %d intact", m, err, good.Generation)
	}
	// Class and hint.
	if tc.logOp != "" && (warn.str("op") != tc.logOp || strings.ReplaceAll(warn.str("kind"), " ", "_") != tc.kind) {
		t.Errorf("logged op %q kind %q, want %q %q: %s", warn.str("op"), warn.str("kind"), tc.logOp, tc.kind, warn.raw)
	}
	if tc.stage != "" && warn.str("stage") != tc.stage {
		t.Errorf("logged stage %q, want %q: %s", warn.str("stage"), tc.stage, warn.raw)
	}
	text := warn.str("hint")
	if tc.logOp == "" {
		text = warn.str("error")
	}
	if !strings.Contains(strings.ToLower(text), strings.ToLower(tc.hint)) {
		t.Errorf("hint/error %q does not mention %q", text, tc.hint)
	}
	// Metrics.
	attempts := int(sum(during, "cesd_refreshes_total", `result="error"`) - sum(before, "cesd_refreshes_total", `result="error"`))
	if attempts < 1 {
		t.Errorf("cesd_refreshes_total{result=\"error\"} did not move")
	}
	if d := sum(during, "cesd_refresh_errors_total", `kind="`+tc.kind+`"`) - sum(before, "cesd_refresh_errors_total", `kind="`+tc.kind+`"`); d < 1 {
		t.Errorf("cesd_refresh_errors_total{kind=%q} did not move", tc.kind)
	}
	if tc.code != "" {
		op := tc.logOp
		if op == "" {
			op = "fetch-credentials"
		}
		lbl := []string{`operation="` + op + `"`, `code="` + tc.code + `"`}
		if d := sum(during, "cesd_ces_requests_total", lbl...) - sum(before, "cesd_ces_requests_total", lbl...); d < 1 {
			t.Errorf("cesd_ces_requests_total{operation=%q,code=%q} did not move", op, tc.code)
		}
	}
	// Calls within the backoff policy.
	floor := tc.minWait
	allowed := maxAttempts(window, floor)
	if tc.kind == "rate_limited" {
		allowed += 2 // each SIGHUP sent into the fault overrides a 429 pause
	}
	if attempts > allowed {
		t.Errorf("%d attempts in %s, backoff allows %d", attempts, window, allowed)
	}
	nFC, nTok := midFC-callsFC, midTok-callsTok
	perAttempt := 1
	if tc.name == "ces_401" {
		perAttempt = 2 // a CES 401 drops the token and retries once
	}
	// +1 attempt: the scrape may land while one is in flight (a hang).
	if nFC > perAttempt*(attempts+1) || nTok > perAttempt*(attempts+1) {
		t.Errorf("%d fetch-credentials and %d token calls for %d attempts", nFC, nTok, attempts)
	}

	// Clear: recovery by itself, no signal.
	at = h.logs.len()
	cleared := time.Now()
	if tc.tls {
		sim.ServeUntrustedCertificate(false)
	} else {
		sim.ClearFaults()
	}
	h.waitLog(at, 10*time.Minute, "recovery", msgIs("new generation live"))
	recover := time.Since(cleared)
	got := checkMatchesSim(t, h.walletDir, sim.Current())
	h.stop()

	metricsMoved := fmt.Sprintf("refreshes{error} +%d, refresh_errors{kind=%q}", attempts, tc.kind)
	if tc.code != "" {
		metricsMoved += fmt.Sprintf(", ces_requests{code=%q}", tc.code)
	}
	class := warn.str("op") + "/" + warn.str("kind")
	if tc.logOp == "" {
		class = "stage " + warn.str("stage")
	}
	return fmt.Sprintf("| %s | %s | %s | %d (%d CES, %d IAM) | %d | %d kept live, then %d | %s |",
		tc.name, class, metricsMoved, attempts, nFC, nTok, allowed, good.Generation, got.Generation, recover.Round(10*time.Millisecond))
}
