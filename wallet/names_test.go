package wallet

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

var nameCases = []struct {
	name string
	ok   bool
}{
	{"cwallet.sso", true},
	{"README", true},
	{"tnsnames.ora", true},
	{"café.ora", true},
	{"日本語.txt", true},
	{".hidden", true},
	{"a..b", true},
	{"x" + strings.Repeat("y", 254), true},
	{"", false},
	{".", false},
	{"..", false},
	{"../x", false},
	{"..\\x", false},
	{"/abs", false},
	{"a/b", false},
	{"a\\b", false},
	{"a/", false},
	{"a\x00b", false},
	{"a\nb", false},
	{"a\tb", false},
	{"a\x7fb", false},
	{"a\u0085b", false},
	{"\xff\xfe", false},
	{strings.Repeat("x", 300), false},
	{strings.Repeat("x", 256), false},
	{"..data", false},
	{"..data_tmp", false},
	{"..1", false},
	{"..x", false},
	{"manifest.json", false},
	{"credentials.json", false},
	{"schemas", false},
}

func TestValidateName(t *testing.T) {
	for _, tc := range nameCases {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) error %v does not wrap ErrInvalidName", tc.name, err)
		}
	}
}

func TestDecodeFilesNames(t *testing.T) {
	for _, tc := range nameCases {
		_, err := DecodeFiles(map[string]string{tc.name: "aGVsbG8="}, Limits{})
		if (err == nil) != tc.ok {
			t.Errorf("DecodeFiles key %q: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestSchemaNames(t *testing.T) {
	for _, tc := range nameCases {
		p := Payload{Files: map[string][]byte{"README": []byte("x")}, Schemas: map[string]string{tc.name: "pw"}}
		_, err := p.Validate(Limits{})
		if (err == nil) != tc.ok {
			t.Errorf("schema %q: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestFromZipNames(t *testing.T) {
	for _, tc := range nameCases {
		// A second top-level file keeps the single-folder flattening out of play.
		data := makeZip(t, zipEntry{name: "README", data: []byte("r")}, zipEntry{name: tc.name, data: []byte("x")})
		files, err := FromZip(data, Limits{})
		ok := tc.ok && tc.name != "README"
		if (err == nil) != ok {
			t.Errorf("FromZip entry %q: err = %v, want ok=%v", tc.name, err, ok)
		}
		if err == nil && string(files[tc.name]) != "x" {
			t.Errorf("FromZip entry %q: content lost", tc.name)
		}
	}
}

type zipEntry struct {
	name    string
	data    []byte
	symlink bool
}

func makeZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.symlink {
			h.SetMode(0o777 | 1<<27) // fs.ModeSymlink
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.name, "/") {
			continue
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// acceptedNameInvariant is what every fuzz target checks for an accepted name.
func acceptedNameInvariant(t *testing.T, name string) {
	t.Helper()
	dir := "/wallet"
	joined := filepath.Join(dir, name)
	if filepath.Dir(joined) != dir || filepath.Base(joined) != name {
		t.Fatalf("accepted name %q escapes or is not a base name: %q", name, joined)
	}
	if strings.HasPrefix(name, "..") || name == manifestFile || name == credsFile || name == schemasDir {
		t.Fatalf("accepted reserved name %q", name)
	}
	if strings.ContainsAny(name, "/\\\x00") {
		t.Fatalf("accepted name %q with a separator or NUL", name)
	}
}

func FuzzValidateName(f *testing.F) {
	for _, tc := range nameCases {
		f.Add(tc.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) == nil {
			acceptedNameInvariant(t, name)
		}
	})
}

func FuzzDecodeFiles(f *testing.F) {
	f.Add("cwallet.sso", "aGVsbG8=", "README", "eA==")
	f.Add("../x", "aGVsbG8=", "a/b", "")
	f.Add("x", "aGVsbG8", "y", "!!!!")
	f.Add("README", "aGVs\nbG8=\n", "readme", "aGVsbG8=")
	lim := Limits{MaxFiles: 4, MaxFileBytes: 64, MaxTotalBytes: 100, MaxNameLen: 32}
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		files, err := DecodeFiles(map[string]string{n1: v1, n2: v2}, lim)
		if err != nil {
			return
		}
		var total int64
		for name, data := range files {
			acceptedNameInvariant(t, name)
			if len(name) > lim.MaxNameLen || int64(len(data)) > lim.MaxFileBytes {
				t.Fatalf("limit not enforced for %q", name)
			}
			total += int64(len(data))
		}
		if total > lim.MaxTotalBytes {
			t.Fatalf("total %d over limit", total)
		}
	})
}

func FuzzFromZip(f *testing.F) {
	f.Add(makeZip(f, zipEntry{name: "README", data: []byte("hello")}))
	f.Add(makeZip(f, zipEntry{name: "W/README", data: []byte("hello")}, zipEntry{name: "W/x", data: []byte("x")}))
	f.Add(makeZip(f, zipEntry{name: "../evil", data: []byte("x")}))
	f.Add(makeZip(f, zipEntry{name: "link", data: []byte("/etc/passwd"), symlink: true}))
	f.Add([]byte("PK\x03\x04garbage"))
	lim := Limits{MaxFiles: 8, MaxFileBytes: 1 << 10, MaxTotalBytes: 4 << 10, MaxNameLen: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := FromZip(data, lim)
		if err != nil {
			return
		}
		var total int64
		for name, b := range files {
			acceptedNameInvariant(t, name)
			if int64(len(b)) > lim.MaxFileBytes {
				t.Fatalf("%q: %d bytes over limit", name, len(b))
			}
			total += int64(len(b))
		}
		if total > lim.MaxTotalBytes || len(files) > lim.MaxFiles {
			t.Fatalf("limits not enforced: %d files, %d bytes", len(files), total)
		}
	})
}

func TestFuzzSeedsDecode(t *testing.T) {
	// Sanity: the std encoding CES uses round-trips.
	want := []byte{0, 1, 2, 250, 251, 252}
	got, err := DecodeFiles(map[string]string{"README": base64.StdEncoding.EncodeToString(want)}, Limits{})
	if err != nil || !bytes.Equal(got["README"], want) {
		t.Fatalf("round trip: %v %v", got, err)
	}
}
