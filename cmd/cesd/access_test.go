package main

import (
	"strings"
	"testing"
)

func TestCheckAccess(t *testing.T) {
	none := access{GID: -1, UID: -1}
	readers := access{Group: "cesd-readers", GID: 2000, UID: -1}
	owned := access{Owner: "app", UID: 1001, GID: -1}
	tests := []struct {
		name string
		a    access
		id   identity
		want string // "" = allowed; else a part of the error
	}{
		{"nothing asked", none, identity{uid: 998, gid: 998}, ""},
		{"root may give to any group", readers, identity{uid: 0, gid: 0}, ""},
		{"primary group", readers, identity{uid: 998, gid: 2000}, ""},
		{"supplementary group", readers, identity{uid: 998, gid: 998, groups: []int{10, 2000}}, ""},
		{"not a member", readers, identity{uid: 998, gid: 998, groups: []int{10}}, `group "cesd-readers" (gid 2000)`},
		{"root may give to any owner", owned, identity{uid: 0}, ""},
		{"owner is cesd itself", owned, identity{uid: 1001, gid: 1001}, ""},
		{"owner needs root", owned, identity{uid: 998, gid: 998}, `owner "app" (uid 1001)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAccess(tc.a, tc.id)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}
