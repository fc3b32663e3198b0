package wallet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReadersDuringSwaps checks the reader contract of PRODUCT.md §5 while the
// writer swaps hundreds of generations with distinct content:
//   - a reader that resolves ..data once reads one complete generation, every
//     file matching that generation's manifest;
//   - a file opened through its stable link is always a complete file of some
//     generation, never partial or empty.
//
// A generation pruned under a slow reader shows up as ENOENT, which the
// contract allows (re-resolve and retry); anything else is a failure.
func TestReadersDuringSwaps(t *testing.T) {
	swaps := 500
	if testing.Short() {
		swaps = 100
	}
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	// Visibility, not durability, is under test; fsyncs would only slow it.
	w.sync = syncNone

	var mu sync.Mutex
	seen := map[string]map[string]bool{} // name -> sha256 of every version ever written
	record := func(p Payload) {
		mu.Lock()
		defer mu.Unlock()
		for name, data := range p.Files {
			if seen[name] == nil {
				seen[name] = map[string]bool{}
			}
			seen[name][SHA256Hex(data)] = true
		}
	}
	known := func(name, sum string) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[name][sum]
	}

	first := testPayload(1)
	record(first)
	mustWrite(t, w, first)

	done := make(chan struct{})
	var snapshots, linkReads, retries atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				switch err := readSnapshot(dir); {
				case err == nil:
					snapshots.Add(1)
				case errors.Is(err, fs.ErrNotExist):
					retries.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			for name := range testSizes {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if errors.Is(err, fs.ErrNotExist) {
					retries.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if len(b) == 0 || !known(name, SHA256Hex(b)) {
					t.Errorf("%s through its link: %d bytes matching no generation", name, len(b))
					return
				}
				linkReads.Add(1)
			}
			b, err := os.ReadFile(filepath.Join(dir, credsFile))
			var creds map[string]string
			if err == nil && (json.Unmarshal(b, &creds) != nil || len(creds) != 2) {
				t.Error("credentials.json through its link is not complete")
				return
			}
		}
	}()

	for i := 2; i <= swaps+1; i++ {
		p := testPayload(i)
		record(p)
		r, err := w.Write(p)
		if err != nil {
			t.Error(err)
			break
		}
		if !r.Swapped || r.Generation != int64(i) {
			t.Errorf("write %d: %+v", i, r)
			break
		}
		if err := w.Prune(); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
	if err := readSnapshot(dir); err != nil {
		t.Fatalf("final snapshot: %v", err)
	}
	t.Logf("%d swaps, %d snapshots, %d link reads, %d pruned-under-reader retries",
		swaps, snapshots.Load(), linkReads.Load(), retries.Load())
	if snapshots.Load() == 0 || linkReads.Load() == 0 {
		t.Fatal("readers never completed a read")
	}
}

// readSnapshot reads a whole generation the way a multi-file reader must:
// resolve ..data once, then read everything from that folder.
func readSnapshot(dir string) error {
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		return err
	}
	gen := filepath.Join(dir, target)
	raw, err := os.ReadFile(filepath.Join(gen, manifestFile))
	if err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return errors.New(target + ": manifest.json incomplete: " + err.Error())
	}
	if genName(m.Generation) != target {
		return errors.New(target + ": manifest of another generation")
	}
	if len(m.Files) != len(testSizes) {
		return errors.New(target + ": manifest lists the wrong files")
	}
	for name, fi := range m.Files {
		b, err := os.ReadFile(filepath.Join(gen, name))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != fi.Size || hex.EncodeToString(sum[:]) != fi.SHA256 {
			return errors.New(target + ": " + name + " does not match its manifest")
		}
	}
	b, err := os.ReadFile(filepath.Join(gen, credsFile))
	if err != nil {
		return err
	}
	var creds map[string]string
	if json.Unmarshal(b, &creds) != nil || len(creds) != len(m.Schemas) {
		return errors.New(target + ": credentials.json does not match the manifest")
	}
	for _, s := range m.Schemas {
		pw, err := os.ReadFile(filepath.Join(gen, schemasDir, s))
		if err != nil {
			return err
		}
		if string(pw) != creds[s] {
			return errors.New(target + ": schemas/" + s + " differs from credentials.json")
		}
	}
	return nil
}
