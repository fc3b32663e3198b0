package wallet

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
)

// ErrTooLarge is wrapped by every size or count limit error.
var ErrTooLarge = errors.New("over limit")

// DecodeFiles decodes CES's map of file name to base64 content and enforces lim.
//
// Encoding: standard base64 (RFC 4648 §4) with padding required and non-zero
// padding bits refused, so a body truncated mid-file is an error rather than a
// shorter file. Leading and trailing ASCII whitespace is trimmed and CR/LF line
// breaks inside are ignored (MIME-style wrapping), since neither can change the
// decoded bytes; any other character is an error. Sizes are checked from the
// encoded length before anything is allocated. Errors name the file, never its
// content.
func DecodeFiles(b64 map[string]string, lim Limits) (map[string][]byte, error) {
	lim = lim.withDefaults()
	if len(b64) > lim.MaxFiles {
		return nil, fmt.Errorf("wallet has %d files, %w of %d", len(b64), ErrTooLarge, lim.MaxFiles)
	}
	names := sortedKeys(b64)
	if err := checkNameSet(names, lim); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(b64))
	var total int64
	for _, name := range names {
		s := strings.Trim(b64[name], " \t\r\n")
		n := int64(len(s) - strings.Count(s, "\n") - strings.Count(s, "\r"))
		// Padded base64 decodes to at least n/4*3-2 bytes.
		if atLeast := n/4*3 - 2; atLeast > lim.MaxFileBytes {
			return nil, fmt.Errorf("file %s: about %d bytes, %w of %d per file", quoteName(name), atLeast, ErrTooLarge, lim.MaxFileBytes)
		} else if total+atLeast > lim.MaxTotalBytes {
			return nil, fmt.Errorf("file %s: wallet %w of %d bytes in total", quoteName(name), ErrTooLarge, lim.MaxTotalBytes)
		}
		buf, err := decodeBase64(s, lim.MaxFileBytes)
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("file %s: %w per file", quoteName(name), err)
		} else if err != nil {
			// CorruptInputError carries only an offset.
			return nil, fmt.Errorf("file %s: invalid base64: %w", quoteName(name), err)
		}
		k := len(buf)
		total += int64(k)
		if total > lim.MaxTotalBytes {
			return nil, fmt.Errorf("file %s: wallet %w of %d bytes in total", quoteName(name), ErrTooLarge, lim.MaxTotalBytes)
		}
		out[name] = buf
	}
	return out, nil
}

// decodeBase64 decodes s as it reads it, into one buffer of the decoded size:
// no copy of the encoded text is made.
func decodeBase64(s string, limit int64) ([]byte, error) {
	dec := base64.NewDecoder(base64.StdEncoding.Strict(), strings.NewReader(s))
	buf := make([]byte, min(int64(base64.StdEncoding.DecodedLen(len(s)))+1, limit+1))
	k := 0
	for k < len(buf) {
		n, err := dec.Read(buf[k:])
		k += n
		if err == io.EOF {
			return buf[:k], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("content %w of %d bytes", ErrTooLarge, limit)
}

// FromZip extracts a wallet zip (CES fetch-wallet) into memory and enforces lim.
//
// Entries must be regular files with valid base names. One exception: when
// every file sits directly inside the same single top-level folder (an archive
// made with `zip -r x.zip Wallet_X/`), that folder is flattened away. Any other
// directory structure, symlink or special entry, duplicate (also after
// flattening, and case-insensitively) or oversized entry is refused. Sizes are
// enforced on the bytes actually inflated, whatever the header declares.
func FromZip(zipData []byte, lim Limits) (map[string][]byte, error) {
	lim = lim.withDefaults()
	zr, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
	if err != nil {
		return nil, fmt.Errorf("wallet zip: %w", err)
	}
	// Directory entries count too: they cost work and are never many in a wallet.
	if len(zr.File) > lim.MaxFiles+1 {
		return nil, fmt.Errorf("wallet zip has %d entries, %w of %d", len(zr.File), ErrTooLarge, lim.MaxFiles)
	}
	prefix := zipPrefix(zr.File)
	type entry struct {
		name string
		f    *zip.File
	}
	var entries []entry
	var names []string
	for _, f := range zr.File {
		mode := f.Mode()
		if mode&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("wallet zip entry %s: symlinks are not allowed", quoteName(f.Name))
		}
		name := f.Name
		if prefix != "" {
			if name == prefix {
				continue // the flattened folder's own entry
			}
			name = strings.TrimPrefix(name, prefix)
		}
		if mode.IsDir() || strings.HasSuffix(f.Name, "/") {
			return nil, fmt.Errorf("wallet zip entry %s: directories are not allowed", quoteName(f.Name))
		}
		if !mode.IsRegular() {
			return nil, fmt.Errorf("wallet zip entry %s: not a regular file", quoteName(f.Name))
		}
		if err := validateName(name, lim.MaxNameLen); err != nil {
			return nil, fmt.Errorf("wallet zip entry: %w", err)
		}
		entries = append(entries, entry{name, f})
		names = append(names, name)
	}
	if len(entries) > lim.MaxFiles {
		return nil, fmt.Errorf("wallet zip has %d files, %w of %d", len(entries), ErrTooLarge, lim.MaxFiles)
	}
	if err := checkNameSet(names, lim); err != nil {
		return nil, fmt.Errorf("wallet zip: %w", err)
	}
	out := make(map[string][]byte, len(entries))
	var total int64
	for _, e := range entries {
		budget := min(lim.MaxFileBytes, lim.MaxTotalBytes-total)
		if e.f.UncompressedSize64 > uint64(budget) {
			return nil, fmt.Errorf("wallet zip entry %s: declares %d bytes, %w (%d per file, %d in total)",
				quoteName(e.name), e.f.UncompressedSize64, ErrTooLarge, lim.MaxFileBytes, lim.MaxTotalBytes)
		}
		rc, err := e.f.Open()
		if err != nil {
			return nil, fmt.Errorf("wallet zip entry %s: %w", quoteName(e.name), err)
		}
		data, err := readCapped(rc, budget)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("wallet zip entry %s: %w (%d per file, %d in total)", quoteName(e.name), err, lim.MaxFileBytes, lim.MaxTotalBytes)
		}
		total += int64(len(data))
		out[e.name] = data
	}
	return out, nil
}

// readCapped reads all of r but never more than limit+1 bytes, so a stream that
// lies about its size costs at most limit bytes of memory.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("content %w of %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// zipPrefix returns "X/" when every non-directory entry is exactly "X/<name>"
// for one valid folder name X, and "" otherwise.
func zipPrefix(files []*zip.File) string {
	prefix := ""
	for _, f := range files {
		dir, rest, ok := strings.Cut(f.Name, "/")
		if !ok || dir == "" || ValidateName(dir) != nil {
			return ""
		}
		if prefix == "" {
			prefix = dir + "/"
		} else if prefix != dir+"/" {
			return ""
		}
		if rest == "" {
			continue // X/ itself
		}
		if strings.Contains(rest, "/") {
			return ""
		}
	}
	return prefix
}

// checkNameSet validates every name and refuses names that differ only in case.
func checkNameSet(names []string, lim Limits) error {
	seen := make(map[string]string, len(names))
	for _, name := range names {
		if err := validateName(name, lim.MaxNameLen); err != nil {
			return err
		}
		k := foldKey(name)
		if prev, dup := seen[k]; dup {
			if prev == name {
				return fmt.Errorf("duplicate file %s", quoteName(name))
			}
			return fmt.Errorf("files %s and %s differ only in case", quoteName(prev), quoteName(name))
		}
		seen[k] = name
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
