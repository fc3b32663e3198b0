//go:build reliability

// Readers under other users (issue 14), with real users: throwaway users and
// groups made with useradd/groupadd and removed afterwards, the real binary,
// rotations from ces/cestest. Needs root (CI runs as root):
//
//	go test -race -tags reliability -count=1 -run TestReaders ./cmd/cesd
//
// Knob: CESD_READER_ROTATIONS (default 20).
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
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
	memberEnv   = "CESD_TEST_MEMBER_READER" // the wallet folder; the member reader mode
	outsiderEnv = "CESD_TEST_OUTSIDER"      // the wallet folder; the outsider mode
	namesEnv    = "CESD_TEST_OUTSIDER_NAMES"
)

// childMode runs the test binary as one of this file's child processes, as
// another user; it reports whether it did.
func childMode() (int, bool) {
	if dir := os.Getenv(memberEnv); dir != "" {
		return memberReader(dir), true
	}
	if dir := os.Getenv(outsiderEnv); dir != "" {
		return outsider(dir, strings.Split(os.Getenv(namesEnv), ",")), true
	}
	return 0, false
}

// requireRoot skips a test that needs root, unless CI set
// CESD_REQUIRE_TOOLS=1 (CI runs as root): a skip there would be a green run
// that proved nothing.
func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "making throwaway users and running readers as them needs root"
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = tool + " is not installed"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CESD_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s, and CESD_REQUIRE_TOOLS=1", why)
	}
	t.Skip(why)
}

type account struct {
	name     string
	uid, gid uint32
}

// accounts are a readers group, a member of it and an outsider, both with a
// primary group of their own, all removed when the test ends.
type accounts struct {
	readers          string
	readersGID       uint32
	member, outsider account
	shared           string // a 0755 folder every account can traverse
	testBin, cesdBin string // copies the accounts may execute
}

func newAccounts(t *testing.T) *accounts {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	a := &accounts{readers: "cesdr" + sfx}
	primary := "cesdp" + sfx
	run("groupadd", a.readers)
	t.Cleanup(func() { _ = exec.Command("groupdel", a.readers).Run() })
	run("groupadd", primary)
	t.Cleanup(func() { _ = exec.Command("groupdel", primary).Run() })
	for _, u := range []struct {
		name   string
		groups []string
	}{{"cesdm" + sfx, []string{"-G", a.readers}}, {"cesdo" + sfx, nil}} {
		args := append([]string{"useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-g", primary}, u.groups...)
		run(append(args, u.name)...)
		t.Cleanup(func() { _ = exec.Command("userdel", u.name).Run() })
	}
	a.member, a.outsider = lookupAccount(t, "cesdm"+sfx), lookupAccount(t, "cesdo"+sfx)
	g, err := user.LookupGroup(a.readers)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	a.readersGID = uint32(gid)

	a.shared, err = os.MkdirTemp("", "cesd-readers-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(a.shared) })
	if err := os.Chmod(a.shared, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a.testBin, a.cesdBin = filepath.Join(a.shared, "cesd.test"), filepath.Join(a.shared, "cesd")
	copyExec(t, self, a.testBin)
	copyExec(t, cesdBin, a.cesdBin)
	return a
}

func lookupAccount(t *testing.T, name string) account {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{name: name, uid: uint32(uid), gid: uint32(gid)}
}

func copyExec(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// as runs cmd as acc with exactly the supplementary groups given: Go does not
// call initgroups(3), so membership is what the test says it is.
func as(cmd *exec.Cmd, acc account, groups ...uint32) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: acc.uid, Gid: acc.gid, Groups: append([]uint32{}, groups...)}}
	return cmd
}

// ---------- the member reader (child process) ----------

// memberReader reads every file of the live generation and through every
// stable link, over and over, with the checks of the crash-consistency
// reader (a permission error counts as torn). It prints "ready", "read ..N"
// once per generation read whole, "error ..." for the first errors, "signal
// K" for each SIGHUP, and at the end
// "result <json>".
func memberReader(dir string) int {
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGHUP)
	go func() {
		n := 0
		for range sigs {
			n++
			say("signal %d", n)
		}
	}()
	r := &reader{dir: dir, known: map[string]map[string]bool{}, seen: map[string]bool{}}
	reported := map[string]bool{}
	told := 0
	stop := os.Getenv(readerStopEnv)
	say("ready")
	for {
		if _, err := os.Stat(stop); err == nil {
			break
		}
		r.readGeneration()
		r.readLinks()
		for ; told < len(r.res.TornSamples); told++ {
			say("error %s", r.res.TornSamples[told])
		}
		for g := range r.seen {
			if !reported[g] {
				reported[g] = true
				say("read %s", g)
			}
		}
		time.Sleep(time.Millisecond) // pace, to leave the CPUs to cesd
	}
	r.res.Generations = len(r.seen)
	b, _ := json.Marshal(r.res)
	say("result %s", b)
	return 0
}

// readerState follows the member reader's output.
type readerState struct {
	mu      sync.Mutex
	changed chan struct{}
	read    map[string]bool
	signals int
	result  *readerResult
}

func followReader(t *testing.T, out io.Reader) *readerState {
	s := &readerState{changed: make(chan struct{}), read: map[string]bool{}}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			switch {
			case strings.HasPrefix(line, "read "):
				s.read[strings.TrimPrefix(line, "read ")] = true
			case strings.HasPrefix(line, "signal "):
				s.signals++
			case strings.HasPrefix(line, "error "):
				t.Logf("member reader: %s", line)
			case strings.HasPrefix(line, "result "):
				var res readerResult
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &res); err == nil {
					s.result = &res
				}
			}
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *readerState) wait(t *testing.T, what string, ok func(*readerState) bool) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		done, ch := ok(s), s.changed
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("the member reader never reported %s", what)
		}
	}
}

// ---------- the outsider (child process) ----------

type outsiderResult struct {
	Attempts, Denied, Read int
	Reached                bool // the wallet folder itself can be stat'ed
	Other                  []string
}

// outsider tries every way into the wallet it knows of: listing the folder,
// resolving ..data, and opening each name through its stable link, through
// ..data and through each generation folder. It prints its result as JSON.
func outsider(dir string, names []string) int {
	var res outsiderResult
	_, err := os.Lstat(dir)
	res.Reached = err == nil
	try := func(err error) {
		res.Attempts++
		switch {
		case err == nil:
			res.Read++
		case errors.Is(err, fs.ErrPermission):
			res.Denied++
		default:
			res.Other = append(res.Other, err.Error())
		}
	}
	_, err = os.ReadDir(dir)
	try(err)
	_, err = os.Readlink(filepath.Join(dir, "..data"))
	try(err)
	for _, name := range names {
		if name == "" {
			continue
		}
		for _, p := range []string{name, filepath.Join("..data", name)} {
			_, err := os.ReadFile(filepath.Join(dir, p))
			try(err)
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

// ---------- the tests ----------

// TestReadersInGroupAcrossRotations: with group and file_mode 0640, a member
// of the group reads every file of every generation, through ..data and the
// stable links, while cesd rotates, with 0 permission errors; an outsider
// reads nothing; the reader, named by a PID file, gets one SIGHUP per
// rotation, and a swap before the PID file exists is counted, not fatal.
func TestReadersInGroupAcrossRotations(t *testing.T) {
	acc := newAccounts(t)
	rotations := envInt("CESD_READER_ROTATIONS", 20)
	sim := cestest.NewServer(cestest.Options{Seed: 14, SendWalletPassword: true})
	defer sim.Close()
	walletDir := filepath.Join(acc.shared, "wallet")
	pidFile := filepath.Join(acc.shared, "app.pid")
	h := newHarness(t, sim, walletDir, map[string]string{
		"GROUP":           acc.readers,
		"FILE_MODE":       "0640",
		"RELOAD_SIGNAL":   "SIGHUP",
		"RELOAD_PID_FILE": pidFile,
		"MIN_INTERVAL":    "1ms",
	})

	// The first generation is swapped in before the reader and its PID
	// file exist: its signal is counted as missing, and cesd carries on.
	from := h.start()
	waitGen := func(gen int) {
		t.Helper()
		_, from = h.waitLog(from, 60*time.Second, fmt.Sprintf("generation %d live", gen), func(e logEntry) bool {
			g, _ := e.fields["generation"].(float64)
			return e.str("msg") == "new generation live" && int(g) == gen
		})
	}
	waitGen(1)
	h.waitLog(0, 30*time.Second, "the missing PID file warned about", func(e logEntry) bool {
		return e.str("msg") == "reload signal not sent; the new generation stays live" && e.str("result") == "missing"
	})

	stop := filepath.Join(acc.shared, "stop")
	rd := as(exec.Command(acc.testBin), acc.member, acc.readersGID)
	rd.Env = append(os.Environ(), memberEnv+"="+walletDir, readerStopEnv+"="+stop, "GOMAXPROCS=1")
	rd.Stderr = os.Stderr
	out, err := rd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if rd.ProcessState == nil {
			_ = rd.Process.Kill()
			_ = rd.Wait()
		}
	}()
	st := followReader(t, out)
	st.wait(t, "ready", func(*readerState) bool { return true })
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(rd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	readWhole := func(gen int) {
		t.Helper()
		st.wait(t, fmt.Sprintf("generation %d read whole", gen), func(s *readerState) bool { return s.read[fmt.Sprintf("..%d", gen)] })
	}
	readWhole(1)
	changes := []string{"all", "credentials", "wallet"}
	for i := 0; i < rotations; i++ {
		gen := i + 2
		sim.Rotate(changes[i%len(changes)])
		h.signal(syscall.SIGHUP) // poll-only here: SIGHUP makes cesd fetch now
		waitGen(gen)
		readWhole(gen)
		st.wait(t, fmt.Sprintf("signal %d", i+1), func(s *readerState) bool { return s.signals >= i+1 })
	}
	swaps := rotations + 1

	m := checkMatchesSim(t, walletDir, sim.Current())
	names := []string{"credentials.json", "manifest.json", "schemas/" + m.Schemas[0]}
	for name := range m.Files {
		names = append(names, name)
	}
	ot := as(exec.Command(acc.testBin), acc.outsider)
	ot.Env = append(os.Environ(), outsiderEnv+"="+walletDir, namesEnv+"="+strings.Join(names, ","))
	b, err := ot.Output()
	if err != nil {
		t.Fatalf("outsider: %v", err)
	}
	var or outsiderResult
	if err := json.Unmarshal(b, &or); err != nil {
		t.Fatalf("outsider said %q: %v", b, err)
	}
	if !or.Reached || or.Read != 0 || or.Denied != or.Attempts || or.Attempts < 2*len(names) {
		t.Errorf("outsider: %+v; want the folder reached and every one of %d attempts denied", or, 2+2*len(names))
	}

	metrics := h.metrics()
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st.wait(t, "its result", func(s *readerState) bool { return s.result != nil })
	if err := rd.Wait(); err != nil {
		t.Fatalf("member reader: %v", err)
	}
	h.stop()
	res := st.result
	if res.Torn != 0 {
		t.Errorf("the member hit %d errors (permission or torn); samples: %q", res.Torn, res.TornSamples)
	}
	if res.LinkReads == 0 || res.Generations < swaps {
		t.Errorf("the member read %d generations and %d stable links; want all %d generations", res.Generations, res.LinkReads, swaps)
	}
	if st.signals != rotations {
		t.Errorf("the reader got %d SIGHUPs for %d rotations", st.signals, rotations)
	}
	if got := sum(metrics, "cesd_reload_signals_total", `result="sent"`); got != float64(rotations) {
		t.Errorf("cesd_reload_signals_total{result=sent} = %v, want %d", got, rotations)
	}
	if got := sum(metrics, "cesd_reload_signals_total", `result="missing"`); got != 1 {
		t.Errorf("cesd_reload_signals_total{result=missing} = %v, want 1 (the first generation)", got)
	}
	if got := sum(metrics, "cesd_reload_signals_total"); got != float64(swaps) {
		t.Errorf("cesd_reload_signals_total over every result = %v, want one per swap, %d", got, swaps)
	}
	checkAccessOnDisk(t, walletDir, acc.readersGID)
	report(t, "readers: %d swaps; member %s: %d generation read sets, %d stable-link reads, %d distinct generations, %d errors, %d SIGHUPs; outsider %s: %d of %d attempts denied",
		swaps, acc.member.name, res.GenerationReads, res.LinkReads, res.Generations, res.Torn, st.signals, acc.outsider.name, or.Denied, or.Attempts)
}

// checkAccessOnDisk: the wallet folder, every generation folder and every
// file in them have the group and 0750/0640; links are links.
func checkAccessOnDisk(t *testing.T, dir string, gid uint32) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		want := fs.FileMode(0o640)
		if fi.IsDir() {
			want = fs.ModeDir | 0o750
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != want || st.Gid != gid {
			t.Errorf("%s: %v group %d, want %v group %d", path, fi.Mode(), st.Gid, want, gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fetchEnv is the environment of a cesd fetch against sim that any account
// can run: the secret in env, the CA in the shared folder.
func fetchEnv(t *testing.T, acc *accounts, sim *cestest.Server) func(extra ...string) []string {
	t.Helper()
	ca := filepath.Join(acc.shared, "ca.pem")
	if err := os.WriteFile(ca, sim.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(extra ...string) []string {
		var out []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "CESD_") {
				out = append(out, kv)
			}
		}
		return append(append(out, "CESD_BASE_URL="+sim.URL, "CESD_TOKEN_URL="+sim.TokenURL,
			"CESD_CLIENT_ID=cestest-client", "CESD_CLIENT_SECRET=cestest-secret", "CESD_CA_FILE="+ca,
			"CESD_METRICS_LISTEN="+freeAddr(t), "CESD_POLL_INTERVAL=1h"), extra...)
	}
}

// runCesd runs cmd and returns its exit code and stderr.
func runCesd(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// TestReadersNonRootInSharedVolume plays the Kubernetes example with real
// users: a volume root-owned, mode 2777, group fsGroup (what the kubelet
// makes of an emptyDir), and cesd not root but a member of that group. The
// mount point itself cannot be given 0750, and cesd says what to do; a
// folder inside it works, with the group and 0640/0750.
func TestReadersNonRootInSharedVolume(t *testing.T) {
	acc := newAccounts(t)
	sim := cestest.NewServer(cestest.Options{Seed: 16})
	defer sim.Close()
	env := fetchEnv(t, acc, sim)
	vol := filepath.Join(acc.shared, "emptydir")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(vol, 0, int(acc.readersGID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vol, 0o777|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	group := strconv.Itoa(int(acc.readersGID)) // as in the example: a GID with no name in the image
	fetch := func(walletDir string) (int, string) {
		cmd := as(exec.Command(acc.cesdBin, "fetch"), acc.member, acc.readersGID)
		// As the shipped ConfigMap: an emptyDir is 2777, which strict_modes
		// refuses; only the pod's own containers share it.
		cmd.Env = env("CESD_WALLET_DIR="+walletDir, "CESD_GROUP="+group, "CESD_FILE_MODE=0640", "CESD_STRICT_MODES=false")
		return runCesd(t, cmd)
	}
	if code, stderr := fetch(vol); code != exitFail || !strings.Contains(stderr, "set wallet_dir to a folder inside it") {
		t.Fatalf("wallet_dir at the volume root: exit %d, want %d with a hint; stderr:\n%s", code, exitFail, stderr)
	}
	walletDir := filepath.Join(vol, "oracle")
	if code, stderr := fetch(walletDir); code != exitOK {
		t.Fatalf("wallet_dir inside the volume: exit %d; stderr:\n%s", code, stderr)
	}
	checkAccessOnDisk(t, walletDir, acc.readersGID)
	checkMatchesSim(t, walletDir, sim.Current())
}

// TestReadersRefused: world modes exit 2 (78 for cesd run), and a cesd that
// is neither root nor a member of group stops at startup naming the group.
func TestReadersRefused(t *testing.T) {
	acc := newAccounts(t)
	sim := cestest.NewServer(cestest.Options{Seed: 15})
	defer sim.Close()
	env := fetchEnv(t, acc, sim)
	tests := []struct {
		name  string
		cmd   string
		as    *account
		env   []string
		code  int
		names string
	}{
		{"world readable, fetch", "fetch", nil, []string{"CESD_GROUP=" + acc.readers, "CESD_FILE_MODE=0644"}, exitConfig, "file_mode"},
		{"world readable, run", "run", nil, []string{"CESD_GROUP=" + acc.readers, "CESD_FILE_MODE=0644"}, exitRunConfig, "file_mode"},
		{"world bits without a group", "fetch", nil, []string{"CESD_FILE_MODE=0604"}, exitConfig, "file_mode"},
		{"group mode without a group", "fetch", nil, []string{"CESD_FILE_MODE=0640"}, exitConfig, "file_mode"},
		{"not a member of the group", "fetch", &acc.outsider, []string{"CESD_GROUP=" + acc.readers, "CESD_FILE_MODE=0640"}, exitFail, `group "` + acc.readers + `"`},
		{"owner without root", "fetch", &acc.outsider, []string{"CESD_OWNER=" + acc.member.name}, exitFail, `owner "` + acc.member.name + `"`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			walletDir := filepath.Join(acc.shared, fmt.Sprintf("wallet-%d", i))
			cmd := exec.Command(acc.cesdBin, tc.cmd)
			if tc.as != nil {
				// The outsider may create its wallet folder, so only the
				// access check can stop it.
				if err := os.Mkdir(walletDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(walletDir, int(tc.as.uid), int(tc.as.gid)); err != nil {
					t.Fatal(err)
				}
				as(cmd, *tc.as)
			}
			cmd.Env = append(env(tc.env...), "CESD_WALLET_DIR="+walletDir)
			code, stderr := runCesd(t, cmd)
			if code != tc.code || !strings.Contains(stderr, tc.names) {
				t.Fatalf("exit %d, want %d naming %s; stderr:\n%s", code, tc.code, tc.names, stderr)
			}
			if ents, _ := os.ReadDir(walletDir); len(ents) != 0 {
				t.Errorf("refused, yet the wallet folder holds %d entries", len(ents))
			}
		})
	}
}
