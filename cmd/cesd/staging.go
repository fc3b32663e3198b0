package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// stagingPrefix names Secret-only mode's staging folders in $TMPDIR.
const stagingPrefix = "cesd-staging-"

// staging is Secret-only mode's private folder (empty wallet_dir with
// secret_name): the validation, derivation and atomic writer work on files,
// so each generation is staged here and the Secret is the only output.
// Nobody reads it: it is 0700, named anew per process, and removed at exit.
// It holds the wallet folder (a child, so strict_modes judges a parent cesd
// owns, not $TMPDIR) and a lock file held for the process's life, by which
// the next start recognises and removes what a killed cesd left behind (a
// container restart keeps its emptyDir).
type staging struct {
	root, walletDir string
	lock            *os.File
}

// newStaging removes abandoned staging folders of this user in parent, then
// makes a new one.
func newStaging(parent string) (*staging, error) {
	old, _ := filepath.Glob(filepath.Join(parent, stagingPrefix+"*"))
	for _, dir := range old {
		removeAbandoned(dir)
	}
	root, err := os.MkdirTemp(parent, stagingPrefix)
	if err != nil {
		return nil, fmt.Errorf("secret-only mode: staging folder in %s (set TMPDIR to a writable folder): %w", parent, err)
	}
	lock, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("secret-only mode: staging folder: %w", err)
	}
	return &staging{root: root, walletDir: filepath.Join(root, "wallet"), lock: lock}, nil
}

// removeAbandoned removes dir if it is a staging folder of this user whose
// lock nobody holds: its cesd is gone.
func removeAbandoned(dir string) {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return
	}
	// No lock file: a cesd starting this instant, or one killed before it
	// staged anything; an empty folder either way, so it stays.
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		os.RemoveAll(dir)
	}
}

// Close removes the staging folder.
func (s *staging) Close() error {
	err := os.RemoveAll(s.root)
	s.lock.Close()
	return err
}
