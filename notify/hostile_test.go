//go:build linux

package notify

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/trigger"
)

// coalescer models the daemon's trigger: it counts calls and keeps at most
// one fetch pending, as the refresher does with its one-slot queue.
type coalescer struct {
	calls   atomic.Int64
	pending chan struct{}
}

func newCoalescer() *coalescer { return &coalescer{pending: make(chan struct{}, 1)} }

func (c *coalescer) Notify(trigger.Change) {
	c.calls.Add(1)
	select {
	case c.pending <- struct{}{}:
	default:
	}
}

// fetches drains the model: how many fetches the triggers so far cost.
func (c *coalescer) fetches() int {
	n := 0
	for {
		select {
		case <-c.pending:
			n++
		default:
			return n
		}
	}
}

// rawExchange writes head then streams bodyLen bytes of body from a
// generator of JSON whitespace (never buffered whole), concurrently reading the status line.
// It returns the status, 0 if the connection closed without one.
func rawExchange(t *testing.T, addr, head string, bodyLen int64) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A safety net against a hung server, not an assertion.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		// The server may close mid-body: a write error then is expected.
		_, _ = io.Copy(conn, io.LimitReader(repeatReader(' '), bodyLen))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	status := 0
	if err == nil {
		status = resp.StatusCode
		_ = resp.Body.Close()
	}
	_ = conn.Close()
	<-wrote
	return status
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func request(method, path, body string) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: cesd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		method, path, len(body), body)
}

// TestHostileCallbacks sends every hostile input to a real listener: each
// gets its status, none reaches the trigger, and the server's memory does
// not follow the attacker's body size.
func TestHostileCallbacks(t *testing.T) {
	c := newCoalescer()
	reg := prometheus.NewRegistry()
	s, err := NewServer(Config{Listen: "127.0.0.1:0", Path: cbPath}, c, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	addr := s.Addr()
	const tenMiB = 10 << 20

	tests := []struct {
		name    string
		head    string
		bodyLen int64 // streamed after head
		want    int
	}{
		{name: "malformed JSON", head: request("POST", cbPath, `{"usecase":"credentialRotation",`), want: 400},
		{name: "binary garbage", head: request("POST", cbPath, "\x00\xff\xfe{"), want: 400},
		{name: "deep JSON", head: request("POST", cbPath, strings.Repeat("[", 10000)), want: 400},
		{name: "wrong usecase", head: request("POST", cbPath, `{"usecase":"credentialRotationNotification","change":"all"}`), want: 400},
		{name: "no usecase", head: request("POST", cbPath, `{"change":"all"}`), want: 400},
		{name: "GET", head: request("GET", cbPath, ""), want: 405},
		{name: "PUT", head: request("PUT", cbPath, body(Usecase, "all")), want: 405},
		{name: "DELETE", head: request("DELETE", cbPath, ""), want: 405},
		{name: "wrong path", head: request("POST", "/", body(Usecase, "all")), want: 404},
		{name: "traversal path", head: request("POST", "/ces/../ces/notify/../../etc/passwd", body(Usecase, "all")), want: 404},
		{name: "path with suffix", head: request("POST", cbPath+"x", body(Usecase, "all")), want: 404},
		{name: "10 MiB body with Content-Length",
			head: fmt.Sprintf("POST %s HTTP/1.1\r\nHost: cesd\r\nContent-Length: %d\r\n\r\n", cbPath, tenMiB), bodyLen: tenMiB, want: 413},
		{name: "10 MiB body chunked",
			head: fmt.Sprintf("POST %s HTTP/1.1\r\nHost: cesd\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", cbPath, tenMiB), bodyLen: tenMiB, want: 413},
		{name: "header over 16 KiB",
			head: "POST " + cbPath + " HTTP/1.1\r\nHost: cesd\r\nX-Pad: " + strings.Repeat("a", 32<<10) + "\r\nContent-Length: 2\r\n\r\n{}", want: 431},
		// The documented limit is the real one (see TestHeaderLimit).
		{name: "head of 16 KiB plus 64 bytes",
			head: padHead(cbPath, HeaderLimit+64, body(Usecase, "all")), want: 431},
		{name: "not HTTP", head: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n", want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got := rawExchange(t, addr, tc.head, tc.bodyLen)
			runtime.ReadMemStats(&after)
			if got != tc.want {
				t.Errorf("status = %d, want %d", got, tc.want)
			}
			// TotalAlloc only grows: had the server buffered the body, it
			// would have allocated at least its size.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 2<<20 {
				t.Errorf("allocated %d KiB while handling it, want < 2 MiB", grew>>10)
			}
		})
	}
	if n := c.calls.Load(); n != 0 {
		t.Errorf("hostile requests reached the trigger %d times, want 0", n)
	}
	cv := counterVec(t, reg)
	if a := testutil.ToFloat64(cv.WithLabelValues("accepted")); a != 0 {
		t.Errorf("accepted = %v, want 0", a)
	}
}

// TestSlowlorisHeaders: a client that dribbles its header one byte at a time
// is cut off by ReadHeaderTimeout, long before it finishes. The timeout is
// shortened from 5s for the test; TestServerLimits pins the real value.
func TestSlowlorisHeaders(t *testing.T) {
	c := newCoalescer()
	s, err := NewServer(Config{Listen: "127.0.0.1:0", Path: cbPath}, c, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.srv.ReadHeaderTimeout = 200 * time.Millisecond
	run(t, s)

	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// At 20 ms a byte this header takes 10 s to send: 50x the timeout.
	head := request("POST", cbPath, body(Usecase, "all")) + strings.Repeat("X", 500-len(request("POST", cbPath, body(Usecase, "all"))))
	head = strings.Replace(head, "\r\n\r\n", "\r\nX-Slow: ", 1)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		// Returns when the server hangs up (EOF or RST), or with a 408.
		_, _ = io.Copy(io.Discard, conn)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	sent := 0
loop:
	for sent < len(head) {
		select {
		case <-closed:
			break loop
		case <-tick.C:
			if _, err := conn.Write([]byte{head[sent]}); err != nil {
				break loop
			}
			sent++
		}
	}
	select {
	case <-closed:
	default:
		t.Fatalf("the server kept a slowloris connection open for the whole %d-byte header", len(head))
	}
	if sent >= len(head) {
		t.Errorf("sent all %d bytes before the cut", sent)
	}
	t.Logf("cut after %d of %d header bytes", sent, len(head))
	if n := c.calls.Load(); n != 0 {
		t.Errorf("trigger called %d times, want 0", n)
	}
}

// raiseFDLimit lifts RLIMIT_NOFILE to want if it can and returns the
// resulting soft limit.
func raiseFDLimit(t *testing.T, want uint64) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return lim.Cur
	}
	orig := lim
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want // needs CAP_SYS_RESOURCE
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		next.Cur, next.Max = orig.Max, orig.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
			return orig.Cur
		}
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	return next.Cur
}

// TestConcurrentConnections holds 10,000 connections open at once (2,000
// under -race, whose runtime caps live goroutines at 8128), each with a valid
// callback. Every one gets its 202, the triggers coalesce into one pending
// fetch, and the server's heap grows by a bounded amount per connection.
func TestConcurrentConnections(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000
	}
	if testing.Short() {
		n = 500
	}
	// Client and server ends both live in this process.
	if lim := raiseFDLimit(t, uint64(2*n+512)); lim < uint64(2*n+512) {
		n = int(lim-512) / 2
		t.Logf("RLIMIT_NOFILE is %d and cannot be raised: using %d connections", lim, n)
	}
	c := newCoalescer()
	s, err := NewServer(Config{Listen: "127.0.0.1:0", Path: cbPath}, c, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.shutdownTimeout = 30 * time.Second
	// This test is about holding many connections, not about slow clients
	// (TestSlowlorisHeaders is): on a loaded machine, opening and writing to
	// thousands of sockets one after another can take longer than the
	// production header timeout, which would then close the first ones.
	s.srv.ReadHeaderTimeout, s.srv.ReadTimeout = 2*time.Minute, 2*time.Minute
	stop := run(t, s)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goBefore := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	d := net.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // safety net only
	defer cancel()
	for range n {
		conn, err := d.DialContext(ctx, "tcp", s.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, conn)
	}
	// Keep-alive requests: every connection stays open after its answer.
	req := strings.Replace(request("POST", cbPath, body(Usecase, "all")), "Connection: close\r\n", "", 1)
	for _, conn := range conns {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Minute)) // safety net only
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
	}
	accepted := 0
	for _, conn := range conns {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			accepted++
		}
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	goDuring := runtime.NumGoroutine()

	if accepted != n {
		t.Errorf("accepted %d of %d", accepted, n)
	}
	if got := c.calls.Load(); got != int64(n) {
		t.Errorf("trigger calls = %d, want %d", got, n)
	}
	if f := c.fetches(); f != 1 {
		t.Errorf("%d callbacks coalesced into %d fetches, want 1", n, f)
	}
	// All n server goroutines are alive now (one per open connection), so
	// this is the peak a flood of idle connections can cost.
	if goDuring-goBefore < n {
		t.Errorf("goroutines grew by %d, want >= %d: were the connections really concurrent?", goDuring-goBefore, n)
	}
	heapGrowth := int64(during.HeapInuse) - int64(before.HeapInuse)
	stackGrowth := int64(during.StackInuse) - int64(before.StackInuse)
	perConn := (heapGrowth + stackGrowth) / int64(n)
	t.Logf("%d connections: heap +%d KiB, stacks +%d KiB, %d B per connection", n, heapGrowth>>10, stackGrowth>>10, perConn)
	if perConn > 64<<10 {
		t.Errorf("%d bytes per open connection, want <= 64 KiB", perConn)
	}

	for _, conn := range conns {
		_ = conn.Close()
	}
	conns = conns[:0]
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestHeaderLimit: the documented 16 KiB is the real limit, net/http's 4 KiB
// of read slack included: a head just under it is served, one just over it
// gets 431 (TestHostileCallbacks).
func TestHeaderLimit(t *testing.T) {
	s, err := NewServer(Config{Listen: "127.0.0.1:0", Path: cbPath}, newCoalescer(), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	if got := rawExchange(t, s.Addr(), padHead(cbPath, HeaderLimit-64, body(Usecase, "all")), 0); got != 202 {
		t.Errorf("a head of 16 KiB less 64 bytes: %d, want 202", got)
	}
}

// padHead is a valid callback whose request head (line and headers, through
// the blank line) is exactly size bytes.
func padHead(path string, size int, body string) string {
	head := func(pad int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: cesd\r\nContent-Length: %d\r\nX-Pad: %s\r\n\r\n", path, len(body), strings.Repeat("a", pad))
	}
	return head(size-len(head(0))) + body
}
