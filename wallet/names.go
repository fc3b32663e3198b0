package wallet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Names the layout reserves at the top level of the wallet folder.
const (
	dataLink      = "..data"
	dataTmpLink   = "..data_tmp"
	linkTmp       = "..link_tmp"
	credsFile     = "credentials.json"
	manifestFile  = "manifest.json"
	schemasDir    = "schemas"
	genPrefix     = ".."
	defaultMaxLen = 255
)

// Limits caps what a payload may hold. Zero fields take the DefaultLimits value.
type Limits struct {
	MaxFiles      int   // wallet files in one payload; also caps the number of schemas
	MaxFileBytes  int64 // decoded size of one file
	MaxTotalBytes int64 // decoded size of all files together
	MaxNameLen    int   // bytes in one file or schema name
}

// DefaultLimits are generous for a wallet (about ten files of a few KiB; an
// Autonomous Database wallet is some 30 KiB in all) yet small enough that a
// hostile payload costs a 64 MiB container nothing it cannot spare.
func DefaultLimits() Limits {
	return Limits{
		MaxFiles:      64,
		MaxFileBytes:  512 << 10,
		MaxTotalBytes: 1 << 20,
		MaxNameLen:    defaultMaxLen,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxNameLen <= 0 {
		l.MaxNameLen = d.MaxNameLen
	}
	return l
}

// ErrInvalidName is wrapped by every name validation error.
var ErrInvalidName = errors.New("invalid name")

// ValidateName accepts only plain base names that are safe as a file name
// directly under the wallet folder (and under schemas/): non-empty, at most 255
// bytes, valid UTF-8, no '/', '\\', NUL or control characters, not "." or "..",
// not starting with ".." (the layout's hidden names: ..data, ..<N>), and not one
// of the names the layout itself uses (credentials.json, manifest.json, schemas).
// Invalid UTF-8 is refused because manifest.json could not round-trip it.
func ValidateName(name string) error {
	return validateName(name, defaultMaxLen)
}

func validateName(name string, maxLen int) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > maxLen:
		return fmt.Errorf("%w: %s is %d bytes, over %d", ErrInvalidName, quoteName(name), len(name), maxLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidName, quoteName(name))
	case name == "." || name == "..":
		return fmt.Errorf("%w: %s", ErrInvalidName, quoteName(name))
	case strings.HasPrefix(name, genPrefix):
		return fmt.Errorf("%w: %s starts with %q, reserved by the layout", ErrInvalidName, quoteName(name), genPrefix)
	case name == credsFile || name == manifestFile || name == schemasDir:
		return fmt.Errorf("%w: %s is reserved by the layout", ErrInvalidName, quoteName(name))
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			return fmt.Errorf("%w: %s contains a path separator", ErrInvalidName, quoteName(name))
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return fmt.Errorf("%w: %s contains a control character", ErrInvalidName, quoteName(name))
		}
	}
	return nil
}

// quoteName renders an untrusted name for an error message: quoted (so control
// characters are escaped) and shortened.
func quoteName(name string) string {
	const max = 64
	if len(name) > max {
		return strconv.Quote(name[:max]) + "..."
	}
	return strconv.Quote(name)
}

// foldKey is the key used to find names that differ only in case, which would
// collide on case-insensitive file systems.
func foldKey(name string) string {
	return strings.ToLower(strings.ToUpper(name))
}

// parseGen returns N for a canonical generation folder name "..N" (N ≥ 1).
func parseGen(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, genPrefix)
	if !ok || s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

func genName(n int64) string { return genPrefix + strconv.FormatInt(n, 10) }
