package wallet

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// BenchmarkWrite measures one full Write of a changed generation: eight wallet
// files of a few KiB, two schemas, all fsynced, swapped and linked.
func BenchmarkWrite(b *testing.B) {
	b.Run("fsync-files", func(b *testing.B) { benchmarkWrite(b, false) })
	b.Run("syncfs", func(b *testing.B) { benchmarkWrite(b, true) })
}

func benchmarkWrite(b *testing.B, syncFS bool) {
	w, err := NewWriter(Config{Dir: b.TempDir(), Now: time.Now, SyncFS: syncFS}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	payloads := [2]Payload{testPayload(1), testPayload(2)}
	b.ResetTimer()
	for i := range b.N {
		if r, err := w.Write(payloads[i%2]); err != nil || !r.Swapped {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkDurableSwapFloor measures the floor of PRODUCT.md §8 on the same
// disk: write the same files into a new folder, make them durable with one
// syncfs(2) (one journal commit), rename a link over ..data. Nothing else.
func BenchmarkDurableSwapFloor(b *testing.B) {
	dir := b.TempDir()
	p := testPayload(1)
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ResetTimer()
	for i := range b.N {
		gen := filepath.Join(dir, genName(int64(i+1)))
		if err := os.Mkdir(gen, 0o700); err != nil {
			b.Fatal(err)
		}
		for name, data := range p.Files {
			if err := os.WriteFile(filepath.Join(gen, name), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		if err := unix.Syncfs(int(d.Fd())); err != nil {
			b.Fatal(err)
		}
		tmp := filepath.Join(dir, dataTmpLink)
		if err := os.Symlink(genName(int64(i+1)), tmp); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
			b.Fatal(err)
		}
	}
}
