//go:build soak

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
)

// TestHostileCallbacksBinary sends every hostile callback to the real cesd
// binary and counts what reaches CES: hostile requests are all rejected and
// cost no fetch; a storm of 10,000 concurrent forged-but-valid callbacks
// costs at most 3 fetches (PRODUCT.md §8), with the default 1 s
// min_interval: coalescing turns any number of triggers during a fetch, or
// during the min_interval wait, into one more fetch. The slowloris case waits out the real 5 s ReadHeaderTimeout.
//
//	go test -tags soak -run '^TestHostileCallbacksBinary$' -count=1 -v ./cmd/cesd
func TestHostileCallbacksBinary(t *testing.T) {
	n := 10000
	if v := os.Getenv("CESD_HOSTILE_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("CESD_HOSTILE_CONNS: %v", err)
		}
	}
	// Go raises the soft fd limit to the hard one at startup, here and in
	// cesd; each side holds n sockets.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n+256) {
		n = int(lim.Cur) - 256
		t.Logf("RLIMIT_NOFILE is %d: using %d connections", lim.Cur, n)
	}
	work := t.TempDir()
	bin := soakBuild(t, work)
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	secretFile, caFile := filepath.Join(work, "client_secret"), filepath.Join(work, "ces-ca.pem")
	soakMust(t, os.WriteFile(secretFile, []byte("cestest-secret"), 0o600))
	soakMust(t, os.WriteFile(caFile, sim.CACertPEM(), 0o600))
	cbAddr, opsAddr := soakFreeAddr(t), soakFreeAddr(t)
	const path = "/cesd/notify"
	logPath := filepath.Join(work, "cesd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY, 0o600)
	soakMust(t, err)
	defer logFile.Close()
	cmd := exec.Command(bin, "run",
		"--base-url", sim.URL, "--token-url", sim.TokenURL,
		"--client-id", "cestest-client", "--client-secret-file", secretFile, "--ca-file", caFile,
		"--wallet-dir", filepath.Join(work, "wallet"),
		"--listen", cbAddr, "--callback-url", "http://"+cbAddr+path, "--metrics-listen", opsAddr,
		// No poll or re-registration during the test: every fetch is a callback's.
		"--poll-interval", "1h", "--register-interval", "1h",
		"--config", "")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	exited := soakStart(t, cmd)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	if err := soakWaitReady(hc, "http://"+opsAddr+"/readyz", exited, time.Minute); err != nil {
		t.Fatalf("cesd never became ready: %v (log %s)", err, logPath)
	}
	fetches := func() int { return sim.Calls(cestest.OpFetchCredentials) + sim.Calls(cestest.OpFetchWallet) }
	quiet := func() int { return soakQuiet(t, fetches, 2*time.Second, time.Minute) }
	base := quiet()

	tenMiB := int64(10 << 20)
	req := func(method, p, body string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: cesd\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, p, len(body), body)
	}
	hostile := []struct {
		name     string
		head     string
		bodyLen  int64
		want     int
		rejected bool // reaches the handler, so counted as rejected
	}{
		{"malformed JSON", req("POST", path, `{"usecase":`), 0, 400, true},
		{"wrong usecase", req("POST", path, `{"usecase":"credentialRotationNotification","change":"all"}`), 0, 400, true},
		{"GET", req("GET", path, ""), 0, 405, true},
		{"PUT", req("PUT", path, `{"usecase":"credentialRotation"}`), 0, 405, true},
		{"wrong path", req("POST", "/", `{"usecase":"credentialRotation"}`), 0, 404, true},
		{"metrics on the callback port", req("GET", "/metrics", ""), 0, 404, true},
		{"10 MiB with Content-Length", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: cesd\r\nContent-Length: %d\r\n\r\n", path, tenMiB), tenMiB, 413, true},
		{"10 MiB chunked", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: cesd\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", path, tenMiB), tenMiB, 413, true},
		{"header over 16 KiB", "POST " + path + " HTTP/1.1\r\nHost: cesd\r\nX-Pad: " + strings.Repeat("a", 32<<10) + "\r\n\r\n", 0, 431, false},
	}
	pid := cmd.Process.Pid
	rssBefore, _ := procStatusKiB(pid, "VmRSS:")
	wantRejected := 0
	for _, h := range hostile {
		if got := binExchange(t, cbAddr, h.head, h.bodyLen); got != h.want {
			t.Errorf("%s: status %d, want %d", h.name, got, h.want)
		}
		if h.rejected {
			wantRejected++
		}
	}
	rssAfter, _ := procStatusKiB(pid, "VmRSS:")
	t.Logf("hostile requests: cesd RSS %d -> %d KiB", rssBefore, rssAfter)

	// Slowloris, one header byte a second against the real 5 s timeout.
	conn, err := net.Dial("tcp", cbAddr)
	soakMust(t, err)
	closed := make(chan struct{})
	go func() { defer close(closed); _, _ = io.Copy(io.Discard, conn) }()
	slow := req("POST", path, `{"usecase":"credentialRotation"}`)
	tick := time.NewTicker(time.Second)
	sent := 0
slowloris:
	for sent < len(slow) {
		select {
		case <-closed:
			break slowloris
		case <-tick.C:
			if _, err := conn.Write([]byte{slow[sent]}); err != nil {
				break slowloris
			}
			sent++
		}
	}
	tick.Stop()
	<-closed
	_ = conn.Close()
	t.Logf("slowloris cut after %d of %d header bytes", sent, len(slow))
	if sent >= len(slow) {
		t.Errorf("slowloris sent its whole request")
	}

	m := scrape(t, hc, opsAddr)
	if a := m[`cesd_notifications_total{result="accepted"}`]; a != 0 {
		t.Errorf("accepted = %v after hostile input, want 0", a)
	}
	if r := m[`cesd_notifications_total{result="rejected"}`]; int(r) != wantRejected {
		t.Errorf("rejected = %v, want %d", r, wantRejected)
	}
	if got := quiet() - base; got != 0 {
		t.Errorf("hostile input caused %d fetches, want 0", got)
	}

	// The storm: n connections open at once, each with a valid callback.
	base = fetches()
	hwmBefore, _ := procStatusKiB(pid, "VmHWM:")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", cbAddr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	valid := strings.Replace(req("POST", path, `{"usecase":"credentialRotation","change":"all"}`), "Connection: close\r\n", "", 1)
	start := time.Now()
	for _, c := range conns {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute)) // safety net only
		if _, err := io.WriteString(c, valid); err != nil {
			t.Fatal(err)
		}
	}
	accepted := 0
	for _, c := range conns {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			accepted++
		}
	}
	storm := time.Since(start)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	hwmAfter, _ := procStatusKiB(pid, "VmHWM:")
	for _, c := range conns {
		_ = c.Close()
	}
	conns = conns[:0]
	stormFetches := quiet() - base
	t.Logf("storm: %d connections open at once (cesd fds %d), %d accepted in %v; %d fetches; cesd peak RSS %d -> %d KiB (+%d B per connection)",
		n, len(fds), accepted, storm.Round(time.Millisecond), stormFetches, hwmBefore, hwmAfter, (hwmAfter-hwmBefore)*1024/int64(n))
	if accepted != n {
		t.Errorf("accepted %d of %d", accepted, n)
	}
	// One fetch to start, then at most one per min_interval (1 s) while
	// callbacks keep landing, plus the one they queue at the end. PRODUCT.md
	// asks for <= 3 when the storm takes about a second.
	if limit := 2 + int(storm/time.Second); stormFetches < 1 || stormFetches > limit {
		t.Errorf("%d callbacks over %v cost %d fetches, want 1 to %d", n, storm, stormFetches, limit)
	}
	if grew := (hwmAfter - hwmBefore) * 1024 / int64(n); grew > 64<<10 {
		t.Errorf("peak RSS grew %d B per connection, want <= 64 KiB", grew)
	}
	soakMust(t, cmd.Process.Signal(os.Interrupt))
	err = <-exited
	exited <- err
	if err != nil {
		t.Errorf("cesd exit: %v", err)
	}
}

// soakQuiet waits until f has not changed for quiet (a separate process
// offers nothing to synchronise on) and returns its value.
func soakQuiet(t *testing.T, f func() int, quiet, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	last, since := f(), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		if v := f(); v != last {
			last, since = v, time.Now()
		}
		if time.Since(since) >= quiet {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("fetches never settled (at %d)", last)
		}
	}
	return last
}

func binExchange(t *testing.T, addr, head string, bodyLen int64) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	soakMust(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // safety net only
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := io.WriteString(conn, head); err == nil {
			_, _ = io.Copy(conn, io.LimitReader(spaces{}, bodyLen))
		}
	}()
	status := 0
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
		status = resp.StatusCode
		_ = resp.Body.Close()
	}
	_ = conn.Close()
	<-wrote
	return status
}

// spaces is an endless JSON-whitespace body.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func scrape(t *testing.T, hc *http.Client, opsAddr string) map[string]float64 {
	t.Helper()
	resp, err := hc.Get("http://" + opsAddr + "/metrics")
	soakMust(t, err)
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}
