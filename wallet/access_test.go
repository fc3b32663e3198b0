package wallet

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func newAccessWriter(t *testing.T, dir string, fileMode, dirMode fs.FileMode, owner *Ownership) *Writer {
	t.Helper()
	w, err := NewWriter(Config{Dir: dir, Keep: 3, Now: func() time.Time { return fixedNow },
		FileMode: fileMode, DirMode: dirMode, Owner: owner}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkTree requires every file and folder under gdir, gdir included, to have
// uid/gid (-1: any) and the file or folder mode.
func checkTree(t *testing.T, gdir string, uid, gid int, fileMode, dirMode fs.FileMode) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(gdir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		want := fileMode
		if fi.IsDir() {
			want = dirMode
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != want || fi.Mode()&fs.ModeType&^fs.ModeDir != 0 {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
		if (uid >= 0 && int(st.Uid) != uid) || (gid >= 0 && int(st.Gid) != gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriteGroupAccessBeforeSwap: with a group mode every file and folder of a
// generation has it already when ..data is swapped (step 6), and the wallet
// folder gets the group's folder mode. The process's own group needs no root.
func TestWriteGroupAccessBeforeSwap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wallet")
	gid := os.Getgid()
	w := newAccessWriter(t, dir, 0o640, 0o750, &Ownership{UID: -1, GID: gid})
	checkMode(t, dir, fs.ModeDir|0o750)
	checked := 0
	w.hook = func(step int, _ string) error {
		if step != 6 {
			return nil
		}
		gens := genDirs(t, dir)
		newest := gens[len(gens)-1]
		checked = checkTree(t, filepath.Join(dir, newest), -1, gid, 0o640, 0o750)
		return nil
	}
	for g := 1; g <= 3; g++ {
		p := testPayload(g)
		r := mustWrite(t, w, p)
		if !r.Swapped {
			t.Fatalf("write %d did not swap", g)
		}
		assertLive(t, dir, p, r.Generation)
	}
	if checked < 5 {
		t.Fatalf("checked %d entries before the swap; want every file and folder", checked)
	}
	checkMode(t, dir, fs.ModeDir|0o750)
}

// TestWriteOwnerAndGroupAsRoot chowns to IDs other than the process's, which
// only root may do (CI runs as root).
func TestWriteOwnerAndGroupAsRoot(t *testing.T) {
	requireRoot(t, "chown to another user")
	dir := filepath.Join(t.TempDir(), "wallet")
	const uid, gid = 54321, 54322
	w := newAccessWriter(t, dir, 0o640, 0o750, &Ownership{UID: uid, GID: gid})
	r := mustWrite(t, w, testPayload(1))
	checkTree(t, r.Dir, uid, gid, 0o640, 0o750)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o750 {
		t.Fatalf("wallet folder: %d:%d %v", st.Uid, st.Gid, fi.Mode())
	}
}

// TestAccessChangeWritesNewGeneration: the same content under a new group or
// mode is written as a new generation, never by changing the live one.
func TestAccessChangeWritesNewGeneration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wallet")
	p := testPayload(1)
	r1 := mustWrite(t, newTestWriter(t, dir, 3), p)
	checkTree(t, r1.Dir, -1, -1, 0o600, 0o700)

	w := newAccessWriter(t, dir, 0o640, 0o750, &Ownership{UID: -1, GID: os.Getgid()})
	r2 := mustWrite(t, w, p)
	if !r2.Swapped || r2.Generation != r1.Generation+1 {
		t.Fatalf("same content under a group mode: %+v, want a new generation", r2)
	}
	checkTree(t, r2.Dir, -1, os.Getgid(), 0o640, 0o750)
	checkTree(t, r1.Dir, -1, -1, 0o600, 0o700) // the old one was never touched
	if r3 := mustWrite(t, w, p); r3.Swapped {
		t.Fatalf("unchanged content and access swapped: %+v", r3)
	}
	// Back to owner only.
	r4 := mustWrite(t, newTestWriter(t, dir, 3), p)
	if !r4.Swapped {
		t.Fatal("back to 0600: no new generation")
	}
	checkTree(t, r4.Dir, -1, -1, 0o600, 0o700)
}

func TestNewWriterRefusesWideModes(t *testing.T) {
	for _, m := range []struct{ file, dir fs.FileMode }{{0o644, 0o750}, {0o640, 0o755}, {0o660, 0o750}, {0o740, 0o750}} {
		_, err := NewWriter(Config{Dir: filepath.Join(t.TempDir(), "w"), FileMode: m.file, DirMode: m.dir}, zaptest.NewLogger(t))
		if err == nil || !strings.Contains(err.Error(), "grant more") {
			t.Errorf("modes %04o/%04o: err = %v", m.file, m.dir, err)
		}
	}
}

// requireRoot skips a check that needs root, unless CI set
// CESD_REQUIRE_TOOLS=1 (CI runs as root): there a skip would be a green run
// that proved nothing.
func requireRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CESD_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s needs root, and CESD_REQUIRE_TOOLS=1", what)
	}
	t.Skipf("%s needs root: skipped", what)
}
