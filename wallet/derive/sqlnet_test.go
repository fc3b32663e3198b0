package derive

import (
	"bytes"
	"strings"
	"testing"
)

const adbSQLNet = `WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY="?/network/admin")))
SSL_SERVER_DN_MATCH=yes
`

func TestRewriteSQLNet(t *testing.T) {
	const dir = "/var/lib/cesd/wallet"
	tests := []struct {
		name, in, want string // want "" = unchanged
	}{
		{"ADB file", adbSQLNet, `WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY="/var/lib/cesd/wallet")))
SSL_SERVER_DN_MATCH=yes
`},
		{"lower case", `(directory="?/network/admin")`, `(directory="/var/lib/cesd/wallet")`},
		{"mixed case path", `(Directory="?/Network/ADMIN")`, `(Directory="/var/lib/cesd/wallet")`},
		{"spaces around =", `(DIRECTORY  =   "?/network/admin" )`, `(DIRECTORY  =   "/var/lib/cesd/wallet" )`},
		{"tabs and newline", "(DIRECTORY\t=\n\t\"?/network/admin\")", "(DIRECTORY\t=\n\t\"/var/lib/cesd/wallet\")"},
		{"unquoted", `(DIRECTORY=?/network/admin)`, `(DIRECTORY="/var/lib/cesd/wallet")`},
		{"unquoted then blank", "(DIRECTORY = ?/network/admin )", `(DIRECTORY = "/var/lib/cesd/wallet" )`},
		{"unquoted at end of file", "DIRECTORY=?/network/admin", `DIRECTORY="/var/lib/cesd/wallet"`},
		{"CRLF", "(DIRECTORY=\"?/network/admin\")\r\nX=1\r\n", "(DIRECTORY=\"/var/lib/cesd/wallet\")\r\nX=1\r\n"},
		{"two occurrences", `A=(DIRECTORY="?/network/admin") B=(DIRECTORY=?/network/admin)`,
			`A=(DIRECTORY="/var/lib/cesd/wallet") B=(DIRECTORY="/var/lib/cesd/wallet")`},
		{"other directory kept", `(DIRECTORY="/opt/wallet")`, ""},
		{"longer word", `(MY_DIRECTORY="?/network/admin")`, ""},
		{"dotted word", `(X.DIRECTORY="?/network/admin")`, ""},
		{"longer path", `(DIRECTORY="?/network/admin/sub")`, ""},
		{"longer path unquoted", `(DIRECTORY=?/network/admin2)`, ""},
		{"unbalanced quote open", `(DIRECTORY="?/network/admin)`, ""},
		{"unbalanced quote close", `(DIRECTORY=?/network/admin")`, ""},
		{"single quotes", `(DIRECTORY='?/network/admin')`, ""},
		{"commented line", "# (DIRECTORY=\"?/network/admin\")\n", ""},
		{"indented comment", "   # DIRECTORY=?/network/admin\n", ""},
		{"comment then live line", "#DIRECTORY=?/network/admin\n(DIRECTORY=?/network/admin)\n",
			"#DIRECTORY=?/network/admin\n(DIRECTORY=\"/var/lib/cesd/wallet\")\n"},
		{"no space before keyword", `(METHOD_DATA=(DIRECTORY="?/network/admin"))`, `(METHOD_DATA=(DIRECTORY="/var/lib/cesd/wallet"))`},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := RewriteSQLNet([]byte(tc.in), dir)
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if string(out) != want {
				t.Errorf("got\n%q\nwant\n%q", out, want)
			}
			if changed != (tc.want != "") {
				t.Errorf("changed = %v", changed)
			}
		})
	}
}

func TestRewriteSQLNetUnusableDir(t *testing.T) {
	for _, dir := range []string{"", "relative/dir", `/a"b`, "/a(b", "/a)b", "/a#b", "/a\nb", "/a=b"} {
		out, changed := RewriteSQLNet([]byte(adbSQLNet), dir)
		if changed || string(out) != adbSQLNet {
			t.Errorf("dir %q: rewritten to %q", dir, out)
		}
	}
	if out, _ := RewriteSQLNet([]byte(adbSQLNet), "/srv/my wallet"); !strings.Contains(string(out), `DIRECTORY="/srv/my wallet"`) {
		t.Errorf("a path with a blank must be quoted: %q", out)
	}
}

func FuzzRewriteSQLNet(f *testing.F) {
	f.Add([]byte(adbSQLNet), "/w")
	f.Add([]byte(`(directory = ?/NETWORK/admin)`), "/var/lib/cesd/wallet")
	f.Add([]byte("# DIRECTORY=\"?/network/admin\"\nDIRECTORY=?/network/admin"), "/x y")
	f.Add([]byte(`DIRECTORY="?/network/admin"DIRECTORY="?/network/admin"`), "/w")
	f.Fuzz(func(t *testing.T, in []byte, dir string) {
		out, changed := RewriteSQLNet(in, dir)
		if !changed {
			if !bytes.Equal(out, in) {
				t.Fatal("unchanged but different")
			}
			return
		}
		if !usableDir(dir) {
			t.Fatalf("rewrote with unusable dir %q", dir)
		}
		if !bytes.Contains(out, []byte(`"`+dir+`"`)) {
			t.Fatal("rewritten without the quoted dir")
		}
		// Idempotent: the rewritten file has nothing left to rewrite, unless
		// dir itself spells the placeholder.
		if !strings.Contains(strings.ToLower(dir), "?/network/admin") {
			if again, ch := RewriteSQLNet(out, dir); ch || !bytes.Equal(again, out) {
				t.Fatalf("not idempotent:\n%q\n%q", out, again)
			}
		}
	})
}
