package derive

import (
	"bytes"
	"regexp"
	"strings"
)

// placeholderRE matches DIRECTORY = "?/network/admin", the placeholder Oracle
// ships in sqlnet.ora. Keyword and path in any case, any blanks (line breaks
// included) around "=", quotes optional but balanced. Group 1 is the keyword
// and "=" as written, group 2 the value.
var placeholderRE = regexp.MustCompile(`(?i)(DIRECTORY[ \t\r\n]*=[ \t\r\n]*)("\?/network/admin"|\?/network/admin)`)

// RewriteSQLNet replaces the value of every DIRECTORY="?/network/admin" in orig
// with walletDir, quoted, keeping the keyword and spacing as written. Other
// DIRECTORY values, the placeholder inside a longer word or path
// (MY_DIRECTORY=..., ?/network/admin2), and lines commented out with # are left
// alone. A walletDir that is not absolute or that holds a quote, parenthesis,
// '#' or control character cannot be written into sqlnet.ora safely: orig is
// returned unchanged. changed reports whether out differs from orig.
func RewriteSQLNet(orig []byte, walletDir string) (out []byte, changed bool) {
	if !usableDir(walletDir) {
		return orig, false
	}
	locs := placeholderRE.FindAllSubmatchIndex(orig, -1)
	if len(locs) == 0 {
		return orig, false
	}
	var b bytes.Buffer
	last := 0
	for _, m := range locs {
		start, end, valStart := m[0], m[1], m[4]
		if !boundaryBefore(orig, start) || !boundaryAfter(orig, end) || commented(orig, start) {
			continue
		}
		b.Write(orig[last:valStart])
		b.WriteByte('"')
		b.WriteString(walletDir)
		b.WriteByte('"')
		last = end
		changed = true
	}
	if !changed {
		return orig, false
	}
	b.Write(orig[last:])
	return b.Bytes(), true
}

func usableDir(dir string) bool {
	if !strings.HasPrefix(dir, "/") {
		return false
	}
	for _, r := range dir {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`"'()#=`, r) {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c == '$' || c == '#' ||
		'0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func boundaryBefore(s []byte, i int) bool { return i == 0 || !isWordByte(s[i-1]) }

// boundaryAfter rejects ?/network/admin continuing into a longer path.
func boundaryAfter(s []byte, i int) bool {
	if i == len(s) {
		return true
	}
	c := s[i]
	return c == ')' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// commented reports whether the line holding s[i] starts with # (after blanks):
// sqlnet.ora has only whole-line comments.
func commented(s []byte, i int) bool {
	lineStart := bytes.LastIndexByte(s[:i], '\n') + 1
	line := bytes.TrimLeft(s[lineStart:i], " \t")
	return len(line) > 0 && line[0] == '#'
}
