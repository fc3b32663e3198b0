package daemon

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cesd/cesd/ces/cestest"

	"github.com/cesd/cesd/daemon/trigger"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRotationLatency measures from the callback reaching the daemon
// (notify calls the trigger) to the new generation being live (the first observer),
// over loopback against cestest with durable writes, jitter off and no floor
// between fetches. Beside it, floor-p50-ms is the quality bar's floor in the
// same run: one fetch from CES on a warm connection, then one minimal durable
// swap of the same files on the same disk (write them, one syncfs, rename a
// link).
func BenchmarkRotationLatency(b *testing.B) {
	b.Run("syncfs", func(b *testing.B) { benchRotationLatency(b, true) })
	b.Run("fsync-files", func(b *testing.B) { benchRotationLatency(b, false) })
}

func benchRotationLatency(b *testing.B, syncFS bool) {
	var received atomic.Int64 // unix nanos of the latest callback
	r := newRig(b, rigOpts{quiet: true, syncFS: syncFS, wrapNotify: func(next trigger.Sink) trigger.Sink {
		return sinkFunc(func(c trigger.Change) {
			received.Store(time.Now().UnixNano())
			next.Notify(c)
		})
	}})
	r.waitCurrent(b)
	var lat []time.Duration
	for b.Loop() {
		r.srv.Rotate("all") // returns once the callback was answered
		r.waitCurrent(b)
		lat = append(lat, time.Duration(r.lastSwap.Load()-received.Load()))
	}
	b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	fetch := func() error { _, err := r.client.FetchCredentials(b.Context()); return err }
	b.ReportMetric(ms(swapFloor(b, fetch, r.srv.Current().Files, 50)), "floor-p50-ms")
}

// swapFloor is the median cost of one fetch (warm: the client has a token
// and a connection) followed by the minimal durable swap of files.
func swapFloor(b *testing.B, fetch func() error, files map[string][]byte, n int) time.Duration {
	dir := b.TempDir()
	ds := make([]time.Duration, 0, n)
	if err := fetch(); err != nil { // warm up: token and connection
		b.Fatal(err)
	}
	for i := range n {
		start := time.Now()
		if err := fetch(); err != nil {
			b.Fatal(err)
		}
		gen := filepath.Join(dir, "g"+strconv.Itoa(i))
		if err := os.Mkdir(gen, 0o700); err != nil {
			b.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(gen, name), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		f, err := os.Open(gen)
		if err != nil {
			b.Fatal(err)
		}
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		tmp := filepath.Join(dir, "link.tmp")
		if err := os.Symlink(gen, tmp); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "link")); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	return percentile(ds, 0.5)
}

// BenchmarkCallbackStorm sends 10,000 callbacks paced over one second to the
// real notify listener while one rotation is pending (its own callback lost),
// with the production floor between fetches (1s). It reports the CES fetches
// one storm caused and the callback p99, and waits for the newest generation
// to be live.
func BenchmarkCallbackStorm(b *testing.B) {
	const (
		total   = 10000
		workers = 16
		span    = time.Second
	)
	r := newRig(b, rigOpts{quiet: true, minInterval: time.Second})
	r.waitCurrent(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	body := []byte(`{"usecase":"credentialRotation","change":"all"}`)
	var fetches, p99 []float64
	for b.Loop() {
		eventually(b, "idle", r.d.q.idle)
		before := r.srv.Calls(cestest.OpFetchCredentials)
		r.srv.SetFault(cestest.OpCallback, cestest.Fault{Kind: cestest.LoseCallbacks})
		r.srv.Rotate("credentials")
		lat := make([][]time.Duration, workers)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Go(func() {
				for i := w; i < total; i += workers {
					if d := time.Until(start.Add(span * time.Duration(i) / total)); d > 0 {
						time.Sleep(d) // paces the load; nothing is synchronised on it
					}
					t0 := time.Now()
					resp, err := hc.Post(r.cbURL, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					lat[w] = append(lat[w], time.Since(t0))
					if resp.StatusCode != http.StatusAccepted {
						b.Errorf("callback answered %d", resp.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
		r.waitCurrent(b)
		eventually(b, "idle", r.d.q.idle)
		fetches = append(fetches, float64(r.srv.Calls(cestest.OpFetchCredentials)-before))
		p99 = append(p99, ms(percentile(slices.Concat(lat...), 0.99)))
	}
	b.ReportMetric(slices.Max(fetches), "max-fetches/storm")
	b.ReportMetric(slices.Max(p99), "callback-p99-ms")
}

// BenchmarkWarmRefresh is a refresh of a running daemon that finds the live
// generation current: token reused, one CES round trip over loopback TLS,
// decode, and the byte comparison with the wallet on disk. Oracle's curl +
// jq + base64 steps take about 0.5 s for the same fetch.
func BenchmarkWarmRefresh(b *testing.B) {
	r := newRig(b, rigOpts{quiet: true, syncFS: true})
	r.waitCurrent(b)
	ctx := b.Context()
	for b.Loop() {
		if res, err := r.pipeline.RunOnce(ctx); err != nil || res.Swapped {
			b.Fatalf("warm refresh: swapped=%v err=%v", res.Swapped, err)
		}
	}
}
