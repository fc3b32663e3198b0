package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/cesd/cesd/wallet"
)

// access is who may read the wallet (group, owner, file_mode), resolved to
// numeric IDs here so that the wallet writer only sees numbers.
type access struct {
	Group    string // as configured: a name or a GID; "" = none
	GID      int    // -1 = none
	Owner    string // as configured: a name or a UID; "" = none
	UID      int    // -1 = none
	FileMode fs.FileMode
	DirMode  fs.FileMode // derived: 0700, or 0750 when the group may read
}

// access parses group, owner and file_mode. The rules: no world bits, no
// execute bits, the group may read but never write, and a group mode needs a
// group (a group without a group mode is a mistake too: it would read nothing).
func (p *parser) access() access {
	a := access{Group: p.str("group"), GID: -1, Owner: p.str("owner"), UID: -1}
	if a.Group != "" {
		a.GID = p.resolveID("group", a.Group, func(name string) (string, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
	}
	if a.Owner != "" {
		a.UID = p.resolveID("owner", a.Owner, func(name string) (string, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
	}
	raw := strings.TrimPrefix(p.str("file_mode"), "0o")
	m, err := strconv.ParseUint(raw, 8, 32)
	switch {
	case err != nil || m > 0o777:
		p.fail("file_mode", fmt.Sprintf("%q: want an octal mode such as 0600 or 0640", p.str("file_mode")))
	case m&0o007 != 0:
		p.fail("file_mode", fmt.Sprintf("%04o grants access to others (world bits); readers other than the owner belong in group, with 0640", m))
	case m&0o111 != 0:
		p.fail("file_mode", fmt.Sprintf("%04o has execute bits; want 0600 or 0640", m))
	case m&0o400 == 0:
		p.fail("file_mode", fmt.Sprintf("%04o does not let the owner read; want 0600 or 0640", m))
	case m&0o020 != 0:
		p.fail("file_mode", fmt.Sprintf("%04o lets the group write; readers only read: want 0640", m))
	case m&0o040 != 0 && a.GID < 0:
		p.fail("file_mode", fmt.Sprintf("%04o gives the group access but group is not set; set group, or use 0600", m))
	case m&0o040 == 0 && a.GID >= 0:
		p.fail("file_mode", fmt.Sprintf("group %q is set but %04o gives it no access; use 0640", a.Group, m))
	}
	a.FileMode = fs.FileMode(m)
	a.DirMode = 0o700
	if m&0o040 != 0 {
		a.DirMode = 0o750
	}
	return a
}

// resolveID takes a number as an ID as it is (a container often has no
// entry for its fsGroup) and looks a name up.
func (p *parser) resolveID(key, v string, lookup func(string) (string, error)) int {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > 1<<31-2 {
			p.fail(key, fmt.Sprintf("%d is out of range", n))
			return -1
		}
		return n
	}
	s, err := lookup(v)
	if err != nil {
		p.fail(key, fmt.Sprintf("%q: %v (a numeric ID works without a name)", v, err))
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail(key, fmt.Sprintf("%q resolves to %q, not a number", v, s))
		return -1
	}
	return n
}

// ownership is the wallet writer's view of a: nil when neither group nor
// owner is set, so files simply belong to cesd.
func (a access) ownership() *wallet.Ownership {
	if a.GID < 0 && a.UID < 0 {
		return nil
	}
	return &wallet.Ownership{UID: a.UID, GID: a.GID}
}

// identity is who cesd runs as, for checkAccess.
type identity struct {
	uid, gid int
	groups   []int
}

func processIdentity() (identity, error) {
	groups, err := os.Getgroups()
	if err != nil {
		return identity{}, fmt.Errorf("cannot list cesd's groups: %w", err)
	}
	return identity{uid: os.Geteuid(), gid: os.Getegid(), groups: groups}, nil
}

// checkAccess is the startup check of a writer (run, fetch): cesd must be
// able to give files to owner and group. It tells the operator what to change
// rather than letting every write fail, and never falls back to 0600.
func checkAccess(a access, id identity) error {
	if a.UID >= 0 && id.uid != 0 && a.UID != id.uid {
		return fmt.Errorf("owner %q (uid %d): cesd runs as uid %d and only root may give files to another user; run cesd as root or drop owner", a.Owner, a.UID, id.uid)
	}
	if a.GID < 0 || id.uid == 0 || a.GID == id.gid || slices.Contains(id.groups, a.GID) {
		return nil
	}
	return fmt.Errorf("group %q (gid %d): cesd (uid %d) is neither root nor a member of it, so it cannot give the wallet to that group; add cesd to the group (systemd: SupplementaryGroups=%s)", a.Group, a.GID, id.uid, a.Group)
}
