package wallet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Config configures a Writer.
type Config struct {
	Dir    string // the wallet folder (PRODUCT.md §5); created DirMode if missing
	Keep   int    // generations kept, the live one included; 0 = DefaultConfig's
	Limits Limits // zero fields take DefaultLimits
	// Now stamps manifest.json's fetchedAt; default time.Now.
	Now func() time.Time
	// SyncFS makes steps 4-5 durable with one syncfs(2) on the folder's file
	// system instead of an fsync per file and folder: one journal commit, close
	// to the PRODUCT.md §8 floor, but it also flushes every other dirty file on
	// that file system, so use it only when the folder has a volume of its own.
	SyncFS bool
	// FileMode is the mode of every file (default 0600) and DirMode of every
	// folder (default 0700). Modes with world or execute bits are refused:
	// the group is the set of trusted readers, nobody else.
	FileMode, DirMode fs.FileMode
	// Owner, when set, owns every file and folder of a generation and the
	// wallet folder itself, which then also gets DirMode. nil: they belong
	// to the process, and an existing wallet folder keeps its mode.
	Owner *Ownership
	// StrictModes refuses a wallet folder, or its parent, writable by group
	// or others (a sticky parent such as /tmp aside), like OpenSSH's
	// StrictModes: whoever can write there can swap the wallet readers load.
	StrictModes bool
}

// ErrUnsafeMode is wrapped by the StrictModes refusal.
var ErrUnsafeMode = errors.New("writable by group or others")

// DefaultConfig is what the config keys default to (keep_generations,
// syncfs, the size limits): three generations, one syncfs per generation.
func DefaultConfig() Config {
	return Config{Keep: 3, Limits: DefaultLimits(), SyncFS: true}
}

// Ownership is who owns the wallet; -1 leaves that ID as the process's own.
type Ownership struct {
	UID, GID int
}

// Result reports what Write did.
type Result struct {
	Generation int64    // the live generation after the call
	Swapped    bool     // a new generation was made live
	Dir        string   // the live generation's folder
	Warnings   []string // from Payload.Validate (also logged)
}

// Writer writes payloads as atomic generations into one wallet folder. It is
// safe for concurrent use, and also excludes other processes writing the same
// folder (a `cesd fetch` beside the daemon) with flock(2) on the folder.
type Writer struct {
	mu   sync.Mutex
	dir  string
	keep int
	lim  Limits
	now  func() time.Time
	log  *zap.Logger
	sync syncMode
	// uid and gid are -1 when left as the process creates them.
	uid, gid          int
	fileMode, dirMode fs.FileMode
	// after is a number every new generation is numbered above (NumberAfter).
	after int64
	// hook, when set by tests, runs before each step (and in step 4 before each
	// file, with its name); an error fails the write at that point.
	hook func(step int, what string) error
}

type syncMode int

const (
	syncFiles syncMode = iota // fsync each file and folder, concurrently
	syncFS                    // one syncfs(2)
	syncNone                  // tests of visibility only: no durability
)

// maxGeneration is the largest generation number cesd writes: a rotation a
// microsecond would take 285 years to reach it, so a larger ..<N> was planted.
const maxGeneration = 1 << 53

// maxParallelWrites bounds the goroutines writing and fsyncing one generation.
const maxParallelWrites = 16

// NewWriter prepares cfg.Dir: it creates it DirMode if missing (an existing
// folder's mode is left as the operator set it unless Owner is set: then it
// gets Owner and DirMode, so that the group can reach ..data and the stable
// links), then, under the folder lock,
// cleans what a crash may have left (temporary links and generation folders
// newer than the live one), repairs the stable top-level links of the live
// generation, and prunes old generations.
func NewWriter(cfg Config, log *zap.Logger) (*Writer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("wallet writer: no folder configured")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("wallet writer: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Writer{dir: dir, keep: cfg.Keep, lim: cfg.Limits.withDefaults(), now: cfg.Now, log: log,
		uid: -1, gid: -1, fileMode: cfg.FileMode, dirMode: cfg.DirMode}
	if w.fileMode == 0 {
		w.fileMode = 0o600
	}
	if w.dirMode == 0 {
		w.dirMode = 0o700
	}
	if w.fileMode&^0o640 != 0 || w.dirMode&^0o750 != 0 {
		return nil, fmt.Errorf("wallet writer: modes %04o/%04o grant more than owner and group read", w.fileMode, w.dirMode)
	}
	if cfg.Owner != nil {
		w.uid, w.gid = cfg.Owner.UID, cfg.Owner.GID
	}
	if cfg.SyncFS {
		w.sync = syncFS
	}
	if w.keep <= 0 {
		w.keep = DefaultConfig().Keep
	}
	if w.now == nil {
		w.now = time.Now
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("wallet writer: create folder: %w", err)
		}
		if err := os.Chmod(dir, w.dirMode); err != nil {
			return nil, fmt.Errorf("wallet writer: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("wallet writer: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		// The operator may point wallet_dir at another folder; it must still be one.
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("wallet writer: %s is a broken symlink: %w", dir, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("wallet writer: %s is a symlink to a non-folder", dir)
		}
		log.Info("wallet folder is a symlink", zap.String("dir", dir))
	case !fi.IsDir():
		return nil, fmt.Errorf("wallet writer: %s is not a folder", dir)
	}
	d, err := w.lock()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if cfg.Owner != nil {
		if err := w.own(d); err != nil {
			hint := ""
			if errors.Is(err, fs.ErrPermission) {
				hint = " (only its owner or root may; a Kubernetes emptyDir or a container volume belongs to root: set wallet_dir to a folder inside it, which cesd creates)"
			}
			return nil, fmt.Errorf("wallet writer: give %s to uid %d gid %d, mode %04o: %w%s", dir, w.uid, w.gid, w.dirMode, err, hint)
		}
	}
	if cfg.StrictModes {
		if err := checkModes(dir); err != nil {
			return nil, err
		}
	}
	if err := w.recover(); err != nil {
		return nil, fmt.Errorf("wallet writer: recover %s: %w", dir, err)
	}
	return w, nil
}

// checkModes refuses dir (symlinks resolved) or its parent when group or
// others may write it; a sticky parent (/tmp) lets nobody rename or remove
// what others own, so it passes.
func checkModes(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("wallet writer: %w", err)
	}
	for i, path := range []string{real, filepath.Dir(real)} {
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("wallet writer: %w", err)
		}
		mode := fi.Mode()
		if mode.Perm()&0o022 == 0 || (i == 1 && mode&fs.ModeSticky != 0) {
			continue
		}
		what := "the wallet folder"
		if i == 1 {
			what = "the wallet folder's parent"
		}
		return fmt.Errorf("wallet writer: %s %s is %w (mode %04o): another local user could replace the wallet; chmod go-w %s, or set strict_modes: false where only trusted writers share it (a pod's emptyDir)",
			what, path, ErrUnsafeMode, mode.Perm()|stickyBits(mode), path)
	}
	return nil
}

func stickyBits(m fs.FileMode) fs.FileMode {
	var out fs.FileMode
	if m&fs.ModeSetgid != 0 {
		out |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		out |= 0o1000
	}
	return out
}

// lock opens the wallet folder and takes an exclusive flock on it; closing the
// returned file releases the lock. The same descriptor fsyncs the folder.
func (w *Writer) lock() (*os.File, error) {
	d, err := os.Open(w.dir)
	if err != nil {
		return nil, fmt.Errorf("open wallet folder: %w", err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock wallet folder: %w", err)
	}
	return d, nil
}

// liveGen is the generation ..data pointed to when a write began.
type liveGen struct {
	name string // "..N", or "" when there is none
	n    int64
	m    *Manifest // nil if unreadable
}

func (w *Writer) live() liveGen {
	name, n, err := resolveLive(w.dir)
	if err != nil {
		if !errors.Is(err, ErrNoWallet) {
			w.log.Warn("ignoring unusable live generation", zap.Error(err))
		}
		return liveGen{}
	}
	if fi, err := os.Lstat(filepath.Join(w.dir, name)); err != nil || !fi.IsDir() {
		w.log.Warn("live generation folder is missing", zap.String("generation", name))
		return liveGen{n: n}
	}
	m, err := readManifestFile(filepath.Join(w.dir, name, manifestFile))
	if err != nil {
		w.log.Warn("live manifest is unreadable", zap.Error(err))
	}
	return liveGen{name: name, n: n, m: m}
}

func (l liveGen) result(dir string) Result {
	r := Result{Generation: l.n}
	if l.name != "" {
		r.Dir = filepath.Join(dir, l.name)
	}
	return r
}

// recover removes what an interrupted Write leaves behind and repairs the live
// generation's stable links. Caller holds the folder lock.
func (w *Writer) recover() error {
	live := w.live()
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if name == dataTmpLink || name == linkTmp {
			if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
				return err
			}
			w.log.Info("removed leftover temporary link", zap.String("name", name))
			continue
		}
		if n, ok := parseGen(name); ok && name != live.name && n > live.n {
			if live.name == "" && w.complete(name) {
				// Nothing is live (..data was removed): a complete folder
				// may be the only copy of a wallet. Keep it.
				continue
			}
			if err := os.RemoveAll(filepath.Join(w.dir, name)); err != nil {
				return err
			}
			w.log.Info("removed unfinished generation", zap.String("generation", name))
		}
	}
	if live.m != nil {
		if err := w.syncLinks(linkNames(live.m)); err != nil {
			return fmt.Errorf("repair links: %w", err)
		}
	}
	if err := w.prune(live.name); err != nil {
		w.log.Warn("pruning old generations failed", zap.Error(err))
	}
	return nil
}

// complete reports whether a generation folder holds a readable manifest.
// With nothing live that is reason enough to keep it: it is never made live
// by recovery, and the first prune after a swap removes it.
func (w *Writer) complete(gen string) bool {
	_, err := readManifestFile(filepath.Join(w.dir, gen, manifestFile))
	return err == nil
}

// Write makes p the live generation, atomically and durably. It mirrors
// Kubernetes' AtomicWriter (pkg/volume/util/atomic_writer.go), plus fsyncs:
//
//  1. p is validated; if it is invalid nothing touches the disk.
//  2. p is compared with the live generation (its files' bytes, credentials,
//     schema files, dates and wallet name, and its owner and modes). If they
//     are identical, Write
//     returns Swapped=false and writes nothing (beyond repairing missing
//     stable links).
//  3. A new hidden folder ..<N> is created, N = the highest generation known
//     + 1 (an existing folder is never reused), and given Owner and DirMode
//     (default 0700).
//  4. Every file of the generation (wallet and derived files, credentials.json,
//     schemas/<SCHEMA>, manifest.json) is created O_EXCL 0600, given Owner
//     and FileMode (default 0600) on its descriptor before it is written (so
//     is schemas/, with DirMode), then written and fsynced; the files are
//     written concurrently so their fsyncs share journal commits.
//  5. The generation folder and its schemas/ are fsynced.
//  6. A symlink ..data_tmp -> ..<N> is created and renamed over ..data: the
//     swap. From here readers see the new generation.
//  7. The wallet folder is fsynced, making the swap durable.
//  8. Stable top-level links name -> ..data/name are made for every file,
//     credentials.json, schemas and manifest.json (each by temp link + rename),
//     and links of files that left the wallet are removed.
//  9. Older generations are pruned by Prune, which the caller runs once the
//     new generation has been announced: deleting files costs a journal
//     commit of its own, and it must not delay a generation going live.
//
// A failure before the swap removes the new folder; a failure in steps 7-8
// swaps the previous generation back in first. Either way the previous
// generation stays live and the error says which step failed. Only if that
// rollback itself fails is the new, complete generation left live
// (Result.Swapped=true alongside the error).
func (w *Writer) Write(p Payload) (Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	// 1. Validate.
	if err := w.step(1, ""); err != nil {
		return Result{}, fmt.Errorf("step 1 (validate): %w", err)
	}
	warnings, err := p.Validate(w.lim)
	if err != nil {
		return Result{}, fmt.Errorf("step 1 (validate): %w", err)
	}
	d, err := w.lock()
	if err != nil {
		return Result{}, err
	}
	defer d.Close()

	// 2. Compare with the live generation.
	live := w.live()
	if err := w.step(2, ""); err != nil {
		return live.result(w.dir), fmt.Errorf("step 2 (compare): %w", err)
	}
	if live.m != nil && w.sameAsLive(p, live) {
		r := live.result(w.dir)
		r.Warnings = warnings
		if err := w.syncLinks(linkNames(live.m)); err != nil {
			return r, fmt.Errorf("step 2 (repair links of unchanged generation): %w", err)
		}
		return r, nil
	}

	// Warnings are worth a line when a generation is written, not on every
	// poll that finds the same payload.
	for _, msg := range warnings {
		w.log.Warn("wallet payload warning", zap.String("warning", msg))
	}

	// 3. Create the new generation folder.
	if err := w.step(3, ""); err != nil {
		return live.result(w.dir), fmt.Errorf("step 3 (create folder): %w", err)
	}
	gen, err := w.createGenDir(live)
	if err != nil {
		return live.result(w.dir), fmt.Errorf("step 3 (create folder): %w", err)
	}
	genDir := filepath.Join(w.dir, genName(gen))
	abort := func(step string, err error) (Result, error) {
		if rmErr := os.RemoveAll(genDir); rmErr != nil {
			w.log.Warn("removing failed generation", zap.String("generation", genName(gen)), zap.Error(rmErr))
		}
		return live.result(w.dir), fmt.Errorf("%s: %w; generation %d stays live", step, err, live.n)
	}

	// 4. Write and fsync every file.
	m := w.manifest(gen, p)
	if err := w.writeFiles(genDir, p, m); err != nil {
		return abort("step 4 (write files)", err)
	}

	// 5. Fsync the generation folder and schemas/.
	if err := w.step(5, ""); err != nil {
		return abort("step 5 (sync folder)", err)
	}
	if err := w.syncGeneration(d, genDir); err != nil {
		return abort("step 5 (sync folder)", err)
	}

	// 6. Swap ..data.
	if err := w.step(6, ""); err != nil {
		return abort("step 6 (swap)", err)
	}
	if err := w.swapData(genName(gen)); err != nil {
		return abort("step 6 (swap)", err)
	}

	// From here the new generation is live; failures swap the old one back.
	rollback := func(step string, err error) (Result, error) {
		if rbErr := w.rollback(d, live); rbErr != nil {
			return Result{Generation: gen, Swapped: true, Dir: genDir, Warnings: warnings},
				fmt.Errorf("%s: %w; rollback failed (%v): generation %d is live", step, err, rbErr, gen)
		}
		return abort(step, err)
	}

	// 7. Fsync the wallet folder.
	if err := w.step(7, ""); err != nil {
		return rollback("step 7 (sync wallet folder)", err)
	}
	if err := w.syncWalletDir(d); err != nil {
		return rollback("step 7 (sync wallet folder)", err)
	}

	// 8. Stable top-level links.
	if err := w.step(8, ""); err != nil {
		return rollback("step 8 (links)", err)
	}
	if err := w.syncLinks(linkNames(m)); err != nil {
		return rollback("step 8 (links)", err)
	}

	// 9. Pruning is left to Prune.
	w.log.Debug("wallet generation live", zap.Int64("generation", gen), zap.Int64("previous", live.n))
	return Result{Generation: gen, Swapped: true, Dir: genDir, Warnings: warnings}, nil
}

// NumberAfter makes every generation written from now on numbered above n,
// whatever the folder holds: a writer taking over from another (fleet mode's
// new leader, whose staging folder starts empty) continues the numbering its
// readers have seen instead of restarting at 1. A lower n than an earlier
// call, or one past the largest number cesd writes, changes nothing.
func (w *Writer) NumberAfter(n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n <= maxGeneration {
		w.after = max(w.after, n)
	}
}

// Prune removes generation folders beyond Config.Keep (the live one
// included), and unfinished folders newer than the live one. It is step 9 of
// Write, run separately so that it stays off the rotation's latency path.
func (w *Writer) Prune() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.lock()
	if err != nil {
		return err
	}
	defer d.Close()
	name, _, err := resolveLive(w.dir)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if err := w.prune(name); err != nil {
		return fmt.Errorf("prune old generations: %w", err)
	}
	return nil
}

func (w *Writer) step(n int, what string) error {
	if w.hook == nil {
		return nil
	}
	return w.hook(n, what)
}

// sameAsLive reports whether p would write exactly the live generation again.
// Anything unreadable counts as a difference.
func (w *Writer) sameAsLive(p Payload, live liveGen) bool {
	m := live.m
	if m.WalletName != p.WalletName ||
		!m.CertificateStartDate.Equal(p.CertificateStartDate) ||
		!m.CertificateEndDate.Equal(p.CertificateEndDate) ||
		!m.LastRotationDate.Equal(p.LastRotationDate) ||
		len(m.Files) != len(p.Files)+len(p.Derived) ||
		!slices.Equal(m.Schemas, sortedKeys(p.Schemas)) {
		return false
	}
	genDir := filepath.Join(w.dir, live.name)
	if !w.liveHasAccess(genDir, m) {
		return false
	}
	for name, fi := range m.Files {
		want, ok := p.Files[name]
		if fi.SentAs != p.SentAs[name] {
			return false
		}
		if fi.Derived {
			d, isDerived := p.Derived[name]
			if !isDerived || d.SourceSHA256 != fi.SourceSHA256 || d.Recipe != fi.Recipe {
				return false
			}
			if d.Recipe != "" {
				// Same source, same recipe: equal by construction, even when
				// the derivation is randomised. The live file must still be
				// the one its manifest describes.
				sum, _, err := hashFile(filepath.Join(genDir, name))
				if err != nil || sum != fi.SHA256 {
					return false
				}
				continue
			}
			want, ok = d.Data, true
		}
		if !ok || int64(len(want)) != fi.Size {
			return false
		}
		got, err := os.ReadFile(filepath.Join(genDir, name))
		if err != nil || !bytes.Equal(got, want) {
			return false
		}
	}
	creds, err := readCredentials(filepath.Join(genDir, credsFile))
	if err != nil || len(creds) != len(p.Schemas) {
		return false
	}
	for s, pw := range p.Schemas {
		if creds[s] != pw {
			return false
		}
		got, err := os.ReadFile(filepath.Join(genDir, schemasDir, s))
		if err != nil || string(got) != pw {
			return false
		}
	}
	return true
}

// liveHasAccess reports whether the live generation has the configured owner
// and modes. If not (group or file_mode changed since it was written), the
// same content is written again as a new generation, because access is set
// before a swap, never changed on a live generation.
func (w *Writer) liveHasAccess(genDir string, m *Manifest) bool {
	check := func(rel string, mode fs.FileMode) bool {
		fi, err := os.Lstat(filepath.Join(genDir, rel))
		return err == nil && w.hasAccess(fi, mode)
	}
	if !check(".", w.dirMode) || !check(schemasDir, w.dirMode) || !check(credsFile, w.fileMode) || !check(manifestFile, w.fileMode) {
		return false
	}
	for name := range m.Files {
		if !check(name, w.fileMode) {
			return false
		}
	}
	for _, s := range m.Schemas {
		if !check(schemasDir+"/"+s, w.fileMode) {
			return false
		}
	}
	return true
}

// createGenDir makes the next generation folder, owned and moded as
// configured whatever the umask.
func (w *Writer) createGenDir(live liveGen) (int64, error) {
	next := max(live.n, w.after)
	if live.m != nil && live.m.Generation <= maxGeneration {
		next = max(next, live.m.Generation)
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		// A name past maxGeneration was planted, not written by cesd: it
		// must not push the next number into overflow. Prune removes it.
		if n, ok := parseGen(e.Name()); ok && n <= maxGeneration {
			next = max(next, n)
		}
	}
	if next >= maxGeneration {
		return 0, fmt.Errorf("generation %d is the last number cesd uses: move the wallet folder's ..<N> folders away to start again from 1", next)
	}
	for range 100 {
		next++
		path := filepath.Join(w.dir, genName(next))
		err := os.Mkdir(path, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if err := w.mkdirAccess(path); err != nil {
			os.Remove(path)
			return 0, err
		}
		return next, nil
	}
	return 0, errors.New("no free generation number")
}

func (w *Writer) manifest(gen int64, p Payload) *Manifest {
	m := &Manifest{
		Generation:           gen,
		WalletName:           p.WalletName,
		CertificateStartDate: p.CertificateStartDate.UTC(),
		CertificateEndDate:   p.CertificateEndDate.UTC(),
		LastRotationDate:     p.LastRotationDate.UTC(),
		FetchedAt:            w.now().UTC(),
		Files:                make(map[string]FileInfo, len(p.Files)+len(p.Derived)),
		Schemas:              append([]string{}, sortedKeys(p.Schemas)...),
	}
	for name, data := range p.Files {
		m.Files[name] = FileInfo{SHA256: SHA256Hex(data), Size: int64(len(data)), SentAs: p.SentAs[name]}
	}
	for name, d := range p.Derived {
		m.Files[name] = FileInfo{SHA256: SHA256Hex(d.Data), Size: int64(len(d.Data)), Derived: true, SourceSHA256: d.SourceSHA256, Recipe: d.Recipe}
	}
	return m
}

// SHA256Hex is the hex SHA-256 of b, as manifest.json records files and
// derived files record their source.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeFiles is step 4: every file of the generation, written and fsynced
// concurrently.
func (w *Writer) writeFiles(genDir string, p Payload, m *Manifest) error {
	schemaDir := filepath.Join(genDir, schemasDir)
	if err := os.Mkdir(schemaDir, 0o700); err != nil {
		return err
	}
	if err := w.mkdirAccess(schemaDir); err != nil {
		return err
	}
	schemas := p.Schemas
	if schemas == nil {
		schemas = map[string]string{} // readers expect an object, never null
	}
	creds, err := marshalJSON(schemas)
	if err != nil {
		return errors.New("encode credentials.json") // the encoder's error could quote a secret
	}
	man, err := marshalJSON(m)
	if err != nil {
		return fmt.Errorf("encode manifest.json: %w", err)
	}
	type job struct {
		rel  string
		data []byte
	}
	jobs := make([]job, 0, len(p.Files)+len(p.Derived)+len(p.Schemas)+2)
	for name, data := range p.Files {
		jobs = append(jobs, job{name, data})
	}
	for name, d := range p.Derived {
		jobs = append(jobs, job{name, d.Data})
	}
	for s, pw := range p.Schemas {
		jobs = append(jobs, job{schemasDir + "/" + s, []byte(pw)})
	}
	jobs = append(jobs, job{credsFile, creds}, job{manifestFile, man})

	errs := make([]error, len(jobs))
	sem := make(chan struct{}, maxParallelWrites)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.step(4, j.rel); err != nil {
				errs[i] = fmt.Errorf("%s: %w", j.rel, err)
				return
			}
			errs[i] = w.writeFile(filepath.Join(genDir, filepath.FromSlash(j.rel)), j.data)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFile creates path (which must not exist) 0600, gives it the
// configured owner and mode whatever the umask, writes data and, when each
// file is synced on its own, fsyncs it. Owner and mode are set on the
// descriptor before any byte is written: nobody ever holds the file open
// with access it should not have.
func (w *Writer) writeFile(path string, data []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if err := w.setAccess(f, w.fileMode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if w.sync != syncFiles {
		return nil
	}
	return f.Sync()
}

// mkdirAccess gives a folder just made (0700) the configured owner and mode,
// through a descriptor.
func (w *Writer) mkdirAccess(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = w.setAccess(d, w.dirMode)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// setAccess chowns (when an owner is configured) before it chmods, so the
// group bits never apply to a group other than the configured one. It calls
// chown only when the owner differs: a cesd whose own group is the readers'
// group never needs it, and systemd's SystemCallFilter=~@privileged (the
// shipped unit) refuses chown altogether.
func (w *Writer) setAccess(f *os.File, mode fs.FileMode) error {
	if w.uid >= 0 || w.gid >= 0 {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !w.ownedRight(fi) {
			if err := f.Chown(w.uid, w.gid); err != nil {
				return err
			}
		}
	}
	return f.Chmod(mode)
}

// ownedRight reports whether fi has the configured owner and group.
func (w *Writer) ownedRight(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return (w.uid < 0 || int(st.Uid) == w.uid) && (w.gid < 0 || int(st.Gid) == w.gid)
}

// own gives the wallet folder (open as d) the configured owner and folder
// mode. It changes only what differs, so a folder prepared by the operator
// (a systemd StateDirectory=, say) needs no privilege it already has.
func (w *Writer) own(d *os.File) error {
	fi, err := d.Stat()
	if err != nil {
		return err
	}
	if !w.hasAccess(fi, w.dirMode) {
		return w.setAccess(d, w.dirMode)
	}
	return nil
}

// hasAccess reports whether fi has the configured owner and mode.
func (w *Writer) hasAccess(fi fs.FileInfo, mode fs.FileMode) bool {
	return fi.Mode().Perm() == mode && w.ownedRight(fi)
}

// syncGeneration is step 5: the generation's folders after its files, or the
// whole file system at once.
func (w *Writer) syncGeneration(d *os.File, genDir string) error {
	switch w.sync {
	case syncFS:
		return unix.Syncfs(int(d.Fd()))
	case syncNone:
		return nil
	}
	if err := syncDir(filepath.Join(genDir, schemasDir)); err != nil {
		return err
	}
	return syncDir(genDir)
}

func (w *Writer) syncWalletDir(d *os.File) error {
	if w.sync == syncNone {
		return nil
	}
	return d.Sync()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// swapData points ..data at gen with one rename(2).
func (w *Writer) swapData(gen string) error {
	tmp := filepath.Join(w.dir, dataTmpLink)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(gen, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, dataLink)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// rollback makes prev live again after a failed step 7 or 8.
func (w *Writer) rollback(d *os.File, prev liveGen) error {
	if prev.name == "" {
		if err := os.Remove(filepath.Join(w.dir, dataLink)); err != nil {
			return err
		}
	} else if err := w.swapData(prev.name); err != nil {
		return err
	}
	if err := w.syncWalletDir(d); err != nil {
		return err
	}
	// With no previous generation every link goes; with an unreadable manifest
	// the links are left as they are.
	var err error
	switch {
	case prev.m != nil:
		err = w.syncLinks(linkNames(prev.m))
	case prev.name == "":
		err = w.syncLinks(nil)
	}
	if err != nil {
		w.log.Warn("restoring links after rollback", zap.Error(err))
	}
	return nil
}

// linkNames lists the top-level entries a generation exposes as stable links.
func linkNames(m *Manifest) []string {
	names := sortedKeys(m.Files)
	return append(names, credsFile, schemasDir, manifestFile)
}

// syncLinks makes name -> ..data/name for each name, replacing anything else
// there by rename(2), and removes ..data/ links not in names. Links already
// right are not touched, so readers never see them change.
func (w *Writer) syncLinks(names []string) error {
	want := make(map[string]bool, len(names))
	tmp := filepath.Join(w.dir, linkTmp)
	for _, name := range names {
		want[name] = true
		target := dataLink + "/" + name
		path := filepath.Join(w.dir, name)
		if cur, err := os.Readlink(path); err == nil && cur == target {
			continue
		}
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.Type()&fs.ModeSymlink == 0 || want[name] || strings.HasPrefix(name, genPrefix) {
			continue
		}
		path := filepath.Join(w.dir, name)
		if cur, err := os.Readlink(path); err == nil && strings.HasPrefix(cur, dataLink+"/") {
			if err := os.Remove(path); err != nil {
				return err
			}
		}
	}
	return nil
}

// prune removes generation folders other than live and the Keep-1 newest
// older ones. Newer folders that are not live are unfinished and go too.
func (w *Writer) prune(live string) error {
	if live == "" {
		// Nothing is live (..data missing or dangling): every folder may be
		// the only copy of a wallet, so keep them all.
		return nil
	}
	liveN, _ := parseGen(live)
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	var older []int64
	var remove []string
	for _, e := range entries {
		n, ok := parseGen(e.Name())
		switch {
		case !ok || e.Name() == live:
		case live != "" && n < liveN:
			older = append(older, n)
		default:
			remove = append(remove, e.Name())
		}
	}
	slices.Sort(older)
	if keepOlder := w.keep - 1; len(older) > keepOlder {
		for _, n := range older[:len(older)-keepOlder] {
			remove = append(remove, genName(n))
		}
	}
	var errs []error
	for _, name := range remove {
		errs = append(errs, os.RemoveAll(filepath.Join(w.dir, name)))
	}
	return errors.Join(errs...)
}
