package wallet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newTestWriter(t *testing.T, dir string, keep int) *Writer {
	t.Helper()
	w, err := NewWriter(Config{Dir: dir, Keep: keep, Now: func() time.Time { return fixedNow }}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustWrite(t *testing.T, w *Writer, p Payload) Result {
	t.Helper()
	r, err := w.Write(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func genDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := parseGen(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

// assertLive checks that dir serves p as generation gen, through ..data and
// through every stable link.
func assertLive(t *testing.T, dir string, p Payload, gen int64) {
	t.Helper()
	if target, err := os.Readlink(filepath.Join(dir, dataLink)); err != nil || target != genName(gen) {
		t.Fatalf("..data -> %q (%v), want %s", target, err, genName(gen))
	}
	m, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if m.Generation != gen {
		t.Fatalf("manifest generation %d, want %d", m.Generation, gen)
	}
	for name, want := range p.Files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Fatalf("%s through its link: %d bytes (%v), want the payload's %d", name, len(got), err, len(want))
		}
	}
	for s, pw := range p.Schemas {
		got, err := os.ReadFile(filepath.Join(dir, schemasDir, s))
		if err != nil || string(got) != pw {
			t.Fatalf("schemas/%s through its link: wrong or unreadable (%v)", s, err)
		}
	}
	var creds map[string]string
	b, err := os.ReadFile(filepath.Join(dir, credsFile))
	if err != nil || json.Unmarshal(b, &creds) != nil || !mapsEqual(creds, p.Schemas) {
		t.Fatalf("credentials.json through its link does not match the payload (%v)", err)
	}
	for _, tmp := range []string{dataTmpLink, linkTmp} {
		if _, err := os.Lstat(filepath.Join(dir, tmp)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left behind (%v)", tmp, err)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func clonePayload(p Payload) Payload {
	q := p
	q.Files = make(map[string][]byte, len(p.Files))
	for k, v := range p.Files {
		q.Files[k] = slices.Clone(v)
	}
	q.Schemas = make(map[string]string, len(p.Schemas))
	for k, v := range p.Schemas {
		q.Schemas[k] = v
	}
	return q
}

func TestWriteLayout(t *testing.T) {
	// A hostile umask proves modes are set explicitly, not left to the umask.
	old := unix.Umask(0o277)
	defer unix.Umask(old)
	dir := filepath.Join(t.TempDir(), "wallet")
	w := newTestWriter(t, dir, 3)
	checkMode(t, dir, fs.ModeDir|0o700)

	p := testPayload(1)
	p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte("-----BEGIN-----"), SourceSHA256: SHA256Hex(p.Files["ewallet.p12"])}}
	r := mustWrite(t, w, p)
	unix.Umask(old)
	if !r.Swapped || r.Generation != 1 || r.Dir != filepath.Join(dir, "..1") {
		t.Fatalf("result %+v", r)
	}
	assertLive(t, dir, p, 1)

	gen := filepath.Join(dir, "..1")
	checkMode(t, gen, fs.ModeDir|0o700)
	checkMode(t, filepath.Join(gen, schemasDir), fs.ModeDir|0o700)
	for name := range p.Files {
		checkMode(t, filepath.Join(gen, name), 0o600)
	}
	for s := range p.Schemas {
		checkMode(t, filepath.Join(gen, schemasDir, s), 0o600)
	}
	for _, name := range []string{credsFile, manifestFile, "ewallet.pem"} {
		checkMode(t, filepath.Join(gen, name), 0o600)
	}

	// Every top-level entry is a stable link into ..data.
	want := []string{credsFile, "ewallet.pem", manifestFile, schemasDir}
	for name := range p.Files {
		want = append(want, name)
	}
	entries, _ := os.ReadDir(dir)
	var top []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		top = append(top, e.Name())
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || target != "..data/"+e.Name() {
			t.Errorf("%s -> %q (%v), want ..data/%s", e.Name(), target, err, e.Name())
		}
	}
	slices.Sort(want)
	if !slices.Equal(top, want) {
		t.Errorf("top level %q, want %q", top, want)
	}

	raw, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secretMarker) {
		t.Fatal("manifest.json holds a password")
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Generation != 1 || m.WalletName != p.WalletName || !m.FetchedAt.Equal(fixedNow) ||
		!m.CertificateStartDate.Equal(p.CertificateStartDate) || !m.CertificateEndDate.Equal(p.CertificateEndDate) ||
		!m.LastRotationDate.Equal(p.LastRotationDate) || !slices.Equal(m.Schemas, []string{"MFCS_RDS_CUSTOM", "RABE01USER"}) {
		t.Errorf("manifest %+v", m)
	}
	for name, data := range p.Files {
		if fi := m.Files[name]; fi.SHA256 != SHA256Hex(data) || fi.Size != int64(len(data)) || fi.Derived {
			t.Errorf("manifest entry %s = %+v", name, fi)
		}
	}
	if fi := m.Files["ewallet.pem"]; !fi.Derived || fi.SourceSHA256 != SHA256Hex(p.Files["ewallet.p12"]) {
		t.Errorf("derived entry %+v", fi)
	}
	for _, key := range []string{`"certificateStartDate": "2025-05-01T10:00:00Z"`, `"fetchedAt": "2025-06-01T12:00:00Z"`, `"derived": true`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("manifest.json lacks %s", key)
		}
	}
	if rm, err := ReadManifest(dir); err != nil || rm.Generation != 1 {
		t.Errorf("ReadManifest = %+v, %v", rm, err)
	}
}

func TestWriteUnchangedSkipsSwap(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	p := testPayload(1)
	mustWrite(t, w, p)
	before, _ := os.ReadFile(filepath.Join(dir, manifestFile))
	w.now = func() time.Time { return fixedNow.Add(time.Hour) }

	r := mustWrite(t, w, clonePayload(p))
	if r.Swapped || r.Generation != 1 {
		t.Fatalf("identical payload: %+v", r)
	}
	if got := genDirs(t, dir); !slices.Equal(got, []string{"..1"}) {
		t.Fatalf("generation folders %q", got)
	}
	after, _ := os.ReadFile(filepath.Join(dir, manifestFile))
	if string(before) != string(after) {
		t.Fatal("manifest rewritten for an unchanged payload")
	}

	// A missing stable link is repaired without a swap.
	os.Remove(filepath.Join(dir, "cwallet.sso"))
	if r := mustWrite(t, w, p); r.Swapped {
		t.Fatal("swapped to repair a link")
	}
	assertLive(t, dir, p, 1)
}

func TestWriteDetectsEachChange(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Payload)
	}{
		{"schema password", func(p *Payload) { p.Schemas["RABE01USER"] = secretMarker + "-new" }},
		{"schema added", func(p *Payload) { p.Schemas["NEW_USER"] = secretMarker }},
		{"one byte of a file", func(p *Payload) { p.Files["tnsnames.ora"][100]++ }},
		{"end date", func(p *Payload) { p.CertificateEndDate = p.CertificateEndDate.Add(time.Millisecond) }},
		{"rotation date", func(p *Payload) { p.LastRotationDate = p.LastRotationDate.Add(time.Second) }},
		{"wallet name", func(p *Payload) { p.WalletName += "2" }},
		{"derived file added", func(p *Payload) { p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte("pem")}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := newTestWriter(t, dir, 3)
			p := testPayload(1)
			mustWrite(t, w, p)
			q := clonePayload(p)
			tc.mutate(&q)
			if r := mustWrite(t, w, q); !r.Swapped || r.Generation != 2 {
				t.Fatalf("result %+v", r)
			}
			assertLive(t, dir, q, 2)
		})
	}
}

func TestWriteRemovedAndAddedFiles(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	mustWrite(t, w, testPayload(1))
	p := testPayload(2)
	delete(p.Files, "README")
	delete(p.Schemas, "RABE01USER")
	p.Files["extra.ora"] = []byte("extra")
	mustWrite(t, w, p)
	assertLive(t, dir, p, 2)
	if _, err := os.Lstat(filepath.Join(dir, "README")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("README link survived its file: %v", err)
	}
	if _, err := os.ReadFile(filepath.Join(dir, schemasDir, "RABE01USER")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed schema still readable: %v", err)
	}
}

func TestPrune(t *testing.T) {
	for _, keep := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir := t.TempDir()
			w := newTestWriter(t, dir, keep)
			for i := 1; i <= 5; i++ {
				mustWrite(t, w, testPayload(i))
			}
			if got := len(genDirs(t, dir)); got != 5 {
				t.Fatalf("Write pruned by itself: %d generations", got)
			}
			if err := w.Prune(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := 5 - keep + 1; i <= 5; i++ {
				want = append(want, genName(int64(i)))
			}
			if got := genDirs(t, dir); !slices.Equal(got, want) {
				t.Fatalf("kept %q, want %q", got, want)
			}
			assertLive(t, dir, testPayload(5), 5)
		})
	}
}

func TestNewWriterCleansCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	for i := 1; i <= 3; i++ {
		mustWrite(t, w, testPayload(i))
	}
	// A crash mid-write of generation 7: half a folder, a temp ..data link, a
	// temp stable link and a stable link never made.
	half := filepath.Join(dir, "..7")
	if err := os.Mkdir(half, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(half, "cwallet.sso"), []byte("half"), 0o600)
	os.Symlink("..7", filepath.Join(dir, dataTmpLink))
	os.Symlink("..data/README", filepath.Join(dir, linkTmp))
	os.Remove(filepath.Join(dir, "tnsnames.ora"))

	w = newTestWriter(t, dir, 3)
	if got := genDirs(t, dir); !slices.Equal(got, []string{"..1", "..2", "..3"}) {
		t.Fatalf("generation folders after recovery %q", got)
	}
	assertLive(t, dir, testPayload(3), 3)

	if r := mustWrite(t, w, testPayload(4)); r.Generation != 4 {
		t.Fatalf("next generation %d, want 4", r.Generation)
	}
	assertLive(t, dir, testPayload(4), 4)
}

func TestNewWriterRejectsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, nil, 0o600)
	if _, err := NewWriter(Config{Dir: path}, nil); err == nil {
		t.Fatal("NewWriter accepted a regular file as its folder")
	}
	if _, err := NewWriter(Config{}, nil); err == nil {
		t.Fatal("NewWriter accepted an empty folder name")
	}
}

func TestWriteInvalidPayloadTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	for _, p := range []Payload{{}, {Files: map[string][]byte{"../evil": []byte("x")}}} {
		if _, err := w.Write(p); err == nil || !strings.Contains(err.Error(), "step 1") {
			t.Fatalf("err = %v, want a step 1 failure", err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("invalid payload left %d entries", len(entries))
	}
	if _, err := ReadManifest(dir); !errors.Is(err, ErrNoWallet) {
		t.Fatalf("ReadManifest on an empty folder: %v", err)
	}
}

func TestWriteFailureKeepsPrevious(t *testing.T) {
	tests := []struct {
		step int
		what string
	}{
		{3, ""}, {4, "tnsnames.ora"}, {4, "schemas/RABE01USER"}, {4, manifestFile}, {4, credsFile},
		{5, ""}, {6, ""}, {7, ""}, {8, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("step%d%s", tc.step, tc.what), func(t *testing.T) {
			dir := t.TempDir()
			w := newTestWriter(t, dir, 3)
			p1 := testPayload(1)
			mustWrite(t, w, p1)
			w.hook = func(step int, what string) error {
				if step == tc.step && what == tc.what {
					return errors.New("injected")
				}
				return nil
			}
			p2 := testPayload(2)
			p2.Files["extra.ora"] = []byte("new file")
			r, err := w.Write(p2)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("step %d", tc.step)) || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("err = %v, want an injected step %d failure", err, tc.step)
			}
			if strings.Contains(err.Error(), secretMarker) {
				t.Fatalf("error leaks a password: %v", err)
			}
			if r.Swapped || r.Generation != 1 {
				t.Fatalf("result %+v after a failure", r)
			}
			assertLive(t, dir, p1, 1)
			if got := genDirs(t, dir); !slices.Equal(got, []string{"..1"}) {
				t.Fatalf("generation folders %q", got)
			}
			if _, err := os.Lstat(filepath.Join(dir, "extra.ora")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("link of the failed generation's new file remains: %v", err)
			}

			w.hook = nil
			mustWrite(t, w, p2)
			assertLive(t, dir, p2, 2)
		})
	}
}

func TestFirstWriteFailureLeavesNoWallet(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	w.hook = func(step int, _ string) error {
		if step == 8 {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := w.Write(testPayload(1)); err == nil {
		t.Fatal("injected failure ignored")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed first write left %d entries", len(entries))
	}
}

func TestLinkFailureRollsBack(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	p1 := testPayload(1)
	mustWrite(t, w, p1)
	// A real folder squats the name of a file the next generation adds, so
	// step 8 cannot rename a link over it.
	squat := filepath.Join(dir, "extra.ora")
	os.Mkdir(squat, 0o700)
	os.WriteFile(filepath.Join(squat, "x"), []byte("x"), 0o600)
	p2 := testPayload(2)
	p2.Files["extra.ora"] = []byte("new")
	if _, err := w.Write(p2); err == nil || !strings.Contains(err.Error(), "step 8") {
		t.Fatalf("err = %v, want a step 8 failure", err)
	}
	assertLive(t, dir, p1, 1)
	if got := genDirs(t, dir); !slices.Equal(got, []string{"..1"}) {
		t.Fatalf("generation folders %q", got)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(gen string) error
		want   string
	}{
		{"changed byte", func(gen string) error {
			path := filepath.Join(gen, "tnsnames.ora")
			b, _ := os.ReadFile(path)
			b[10]++
			return os.WriteFile(path, b, 0o600)
		}, `"tnsnames.ora" (sha256 differs)`},
		{"truncated", func(gen string) error { return os.Truncate(filepath.Join(gen, "cwallet.sso"), 10) }, `"cwallet.sso" (size 10`},
		{"deleted", func(gen string) error { return os.Remove(filepath.Join(gen, "README")) }, `"README"`},
		{"schema file deleted", func(gen string) error { return os.Remove(filepath.Join(gen, schemasDir, "RABE01USER")) }, "schemas/"},
		{"credentials rewritten", func(gen string) error {
			return os.WriteFile(filepath.Join(gen, credsFile), []byte(`{"OTHER":"`+secretMarker+`"}`), 0o600)
		}, credsFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := newTestWriter(t, dir, 3)
			p := testPayload(1)
			mustWrite(t, w, p)
			if err := tc.tamper(filepath.Join(dir, "..1")); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secretMarker) {
				t.Fatalf("Verify error leaks a password: %v", err)
			}
			// The writer does not trust the manifest alone: it rewrites.
			if r := mustWrite(t, w, p); !r.Swapped {
				t.Fatal("tampered live generation treated as unchanged")
			}
			assertLive(t, dir, p, 2)
		})
	}
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	var wg sync.WaitGroup
	var mu sync.Mutex
	swaps := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				r, err := w.Write(testPayload(100*g + i + 1))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if r.Swapped {
					swaps++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	m, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != int64(swaps) || swaps != 20 {
		t.Fatalf("generation %d after %d swaps", m.Generation, swaps)
	}
}

func TestWriteSyncFS(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(Config{Dir: dir, SyncFS: true}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		mustWrite(t, w, testPayload(i))
		assertLive(t, dir, testPayload(i), int64(i))
	}
}

// TestRandomisedDerivationIsUnchanged: an encrypted ewallet.pem differs on
// every derivation (random salt); with the same source and recipe it must not
// make a new generation on every poll.
func TestRandomisedDerivationIsUnchanged(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 3)
	withPEM := func(data, recipe string) Payload {
		p := testPayload(1)
		p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte(data), SourceSHA256: strings.Repeat("ab", 32), Recipe: recipe}}
		return p
	}
	steps := []struct {
		p        Payload
		wantSwap bool
	}{
		{withPEM("salt-1", "encrypted"), true},
		{withPEM("salt-2", "encrypted"), false}, // same source and recipe
		{withPEM("salt-3", "plain"), true},      // recipe changed
		{withPEM("other", ""), true},            // no recipe: compared by bytes
		{withPEM("other", ""), false},
	}
	for i, s := range steps {
		if r := mustWrite(t, w, s.p); r.Swapped != s.wantSwap {
			t.Fatalf("step %d: swapped=%v, want %v", i, r.Swapped, s.wantSwap)
		}
	}
	// A tampered derived file is rewritten even with a matching recipe.
	mustWrite(t, w, withPEM("salt-4", "encrypted"))
	live, _ := os.Readlink(filepath.Join(dir, "..data"))
	os.WriteFile(filepath.Join(dir, live, "ewallet.pem"), []byte("tampered"), 0o600)
	if r := mustWrite(t, w, withPEM("salt-5", "encrypted")); !r.Swapped {
		t.Fatal("tampered ewallet.pem was kept")
	}
}

// TestNoLiveGenerationPrunesNothing: with ..data gone, every generation
// folder may be the only copy of a wallet.
func TestNoLiveGenerationPrunesNothing(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 1)
	for i := 1; i <= 3; i++ {
		mustWrite(t, w, testPayload(i))
	}
	if err := os.Remove(filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	newTestWriter(t, dir, 1) // startup recovery
	if got := genDirs(t, dir); len(got) != 3 {
		t.Fatalf("generations after recovery with nothing live: %q", got)
	}
}

// TestPlantedGenerationNames: folders named past the largest generation cesd
// writes (up to ..9223372036854775807) must not overflow the next number,
// wedge the swap or survive pruning; a live number at the limit is an error.
func TestPlantedGenerationNames(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 2)
	mustWrite(t, w, testPayload(1))
	for _, name := range []string{"..9223372036854775807", "..9007199254740993", "..99999999999999999999"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r := mustWrite(t, w, testPayload(2))
	if r.Generation != 2 {
		t.Fatalf("generation %d after planted folders, want 2", r.Generation)
	}
	assertLive(t, dir, testPayload(2), 2)
	if err := w.Prune(); err != nil {
		t.Fatal(err)
	}
	if got := genDirs(t, dir); !slices.Equal(got, []string{"..1", "..2"}) {
		t.Fatalf("after prune: %q", got)
	}
	// A live generation at the limit (a planted ..data) is refused, not wrapped.
	limit := genName(maxGeneration)
	if err := os.Rename(filepath.Join(dir, "..2"), filepath.Join(dir, limit)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(limit, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(testPayload(3)); err == nil || !strings.Contains(err.Error(), "last number") {
		t.Fatalf("write past the limit: %v", err)
	}
}

// TestStrictModes: a wallet folder or parent writable by group or others is
// refused, naming the path and mode; a sticky parent (/tmp) is not.
func TestStrictModes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		parent, dir fs.FileMode
		want        string // "" = accepted
	}{
		{"private", 0o700, 0o700, ""},
		{"group readable", 0o750, 0o750, ""},
		{"sticky world-writable parent", 0o1777, 0o700, ""},
		{"group-writable folder", 0o700, 0o770, "mode 0770"},
		{"world-writable parent", 0o777, 0o700, "parent"},
		{"group-writable setgid parent", 0o2770, 0o700, "mode 2770"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "p")
			dir := filepath.Join(parent, "wallet")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			// os.Chmod takes the sticky and setgid bits as fs.ModeSticky/ModeSetgid.
			chmod := func(p string, m fs.FileMode) {
				mode := m.Perm()
				if m&0o1000 != 0 {
					mode |= fs.ModeSticky
				}
				if m&0o2000 != 0 {
					mode |= fs.ModeSetgid
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
			chmod(dir, tc.dir)
			chmod(parent, tc.parent)
			_, err := NewWriter(Config{Dir: dir, StrictModes: true}, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnsafeMode) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrUnsafeMode naming %q", err, tc.want)
			}
		})
	}
}

// TestNumberAfter: a writer told the number its readers last saw (a new
// fleet leader with an empty staging folder) numbers its generations above
// it, never lower; an unchanged payload still writes nothing.
func TestNumberAfter(t *testing.T) {
	dir := t.TempDir()
	w := newTestWriter(t, dir, 2)
	w.NumberAfter(41)
	if r := mustWrite(t, w, testPayload(1)); r.Generation != 42 || !r.Swapped {
		t.Fatalf("first generation after 41: %+v", r)
	}
	assertLive(t, dir, testPayload(1), 42)
	w.NumberAfter(7) // lower: the folder's own numbering wins
	if r := mustWrite(t, w, testPayload(2)); r.Generation != 43 {
		t.Fatalf("generation %d, want 43", r.Generation)
	}
	w.NumberAfter(100)
	if r := mustWrite(t, w, testPayload(2)); r.Swapped || r.Generation != 43 {
		t.Fatalf("unchanged payload after NumberAfter: %+v", r)
	}
	w.NumberAfter(maxGeneration + 1) // planted: ignored, never an overflow
	if r := mustWrite(t, w, testPayload(3)); r.Generation != 101 {
		t.Fatalf("generation %d, want 101", r.Generation)
	}
}
