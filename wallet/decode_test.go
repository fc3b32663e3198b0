package wallet

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

func TestDecodeFiles(t *testing.T) {
	secret := "c2VjcmV0LWNvbnRlbnQtbm90LWZvci1lcnJvcnM=" // "secret-content-not-for-errors"
	small := Limits{MaxFiles: 3, MaxFileBytes: 10, MaxTotalBytes: 15}
	tests := []struct {
		name    string
		in      map[string]string
		lim     Limits
		want    map[string]string
		wantErr string
	}{
		{name: "ok", in: map[string]string{"README": "aGVsbG8=", "x": ""}, want: map[string]string{"README": "hello", "x": ""}},
		{name: "line wrapped and trailing newline", in: map[string]string{"README": "aGVs\r\nbG8=\n"}, want: map[string]string{"README": "hello"}},
		{name: "missing padding", in: map[string]string{"README": "aGVsbG8"}, wantErr: `"README": invalid base64`},
		{name: "url alphabet", in: map[string]string{"README": "-_-_"}, wantErr: "invalid base64"},
		{name: "inner space", in: map[string]string{"README": "aGVs bG8="}, wantErr: "invalid base64"},
		{name: "non-canonical padding bits", in: map[string]string{"README": "aGVsbG9="}, wantErr: "invalid base64"},
		{name: "garbage never echoed", in: map[string]string{"README": secret + "!"}, wantErr: "invalid base64"},
		{name: "hostile name", in: map[string]string{"../x": "aGVsbG8="}, wantErr: "invalid name"},
		{name: "case collision", in: map[string]string{"README": "eA==", "readme": "eA=="}, wantErr: "differ only in case"},
		{name: "too many files", in: map[string]string{"a": "", "b": "", "c": "", "d": ""}, lim: small, wantErr: "4 files"},
		{name: "oversized file", in: map[string]string{"a": base64.StdEncoding.EncodeToString(make([]byte, 11))}, lim: small, wantErr: "per file"},
		{name: "oversized file before decoding", in: map[string]string{"a": strings.Repeat("AAAA", 1000)}, lim: small, wantErr: "per file"},
		{name: "at the file limit", in: map[string]string{"a": base64.StdEncoding.EncodeToString(make([]byte, 10))}, lim: small, want: map[string]string{"a": string(make([]byte, 10))}},
		{name: "oversized total", in: map[string]string{
			"a": base64.StdEncoding.EncodeToString(make([]byte, 8)),
			"b": base64.StdEncoding.EncodeToString(make([]byte, 8)),
		}, lim: small, wantErr: "in total"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeFiles(tc.in, tc.lim)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret[:20]) {
					t.Fatalf("error quotes content: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d files, want %d", len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if string(got[k]) != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// endless serves zeros forever and counts what it served.
type endless struct{ served int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.served += int64(len(p))
	return len(p), nil
}

func TestReadCappedStopsAtLimit(t *testing.T) {
	src := &endless{}
	_, err := readCapped(src, 1000)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// io.ReadAll asks in chunks of at least 512 bytes; LimitReader trims them.
	if src.served > 1001+512 {
		t.Fatalf("read %d bytes from an endless stream with a 1000-byte limit", src.served)
	}
}

// lyingZip holds one deflated entry whose header declares declared bytes
// while it really inflates to real zero bytes.
func lyingZip(t *testing.T, name string, declared uint64, real int) []byte {
	t.Helper()
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(make([]byte, real))
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: name, Method: zip.Deflate,
		CRC32:              crc32.ChecksumIEEE(make([]byte, real)),
		CompressedSize64:   uint64(comp.Len()),
		UncompressedSize64: declared,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	return buf.Bytes()
}

func TestFromZip(t *testing.T) {
	lim := Limits{MaxFiles: 4, MaxFileBytes: 1 << 10, MaxTotalBytes: 1536}
	tests := []struct {
		name    string
		zip     []byte
		want    map[string]string
		wantErr string
	}{
		{name: "flat", zip: makeZip(t, zipEntry{name: "README", data: []byte("r")}, zipEntry{name: "cwallet.sso", data: []byte("c")}),
			want: map[string]string{"README": "r", "cwallet.sso": "c"}},
		{name: "single folder flattened", zip: makeZip(t, zipEntry{name: "Wallet_X/"}, zipEntry{name: "Wallet_X/README", data: []byte("r")}, zipEntry{name: "Wallet_X/tnsnames.ora", data: []byte("t")}),
			want: map[string]string{"README": "r", "tnsnames.ora": "t"}},
		{name: "nested folder", zip: makeZip(t, zipEntry{name: "W/a/README", data: []byte("r")}), wantErr: "invalid name"},
		{name: "folder plus top-level file", zip: makeZip(t, zipEntry{name: "W/README", data: []byte("r")}, zipEntry{name: "x", data: []byte("x")}), wantErr: "invalid name"},
		{name: "two folders", zip: makeZip(t, zipEntry{name: "A/x", data: []byte("r")}, zipEntry{name: "B/y", data: []byte("x")}), wantErr: "invalid name"},
		{name: "zip slip", zip: makeZip(t, zipEntry{name: "../../etc/cron.d/x", data: []byte("r")}), wantErr: "zip"},
		{name: "zip slip via folder", zip: makeZip(t, zipEntry{name: "W/../../x", data: []byte("r")}), wantErr: "zip"},
		{name: "absolute", zip: makeZip(t, zipEntry{name: "/etc/passwd", data: []byte("r")}), wantErr: "zip"},
		{name: "reserved name in folder", zip: makeZip(t, zipEntry{name: "W/..data", data: []byte("r")}), wantErr: "invalid name"},
		{name: "symlink entry", zip: makeZip(t, zipEntry{name: "cwallet.sso", data: []byte("/etc/shadow"), symlink: true}), wantErr: "symlinks"},
		{name: "directory entry", zip: makeZip(t, zipEntry{name: "README", data: []byte("r")}, zipEntry{name: "sub/"}), wantErr: "directories"},
		{name: "duplicate entry", zip: makeZip(t, zipEntry{name: "README", data: []byte("a")}, zipEntry{name: "README", data: []byte("b")}), wantErr: "duplicate"},
		{name: "case duplicate", zip: makeZip(t, zipEntry{name: "README", data: []byte("a")}, zipEntry{name: "Readme", data: []byte("b")}), wantErr: "differ only in case"},
		{name: "too many entries", zip: makeZip(t, zipEntry{name: "a"}, zipEntry{name: "b"}, zipEntry{name: "c"}, zipEntry{name: "d"}, zipEntry{name: "e"}, zipEntry{name: "f"}), wantErr: "entries"},
		{name: "oversized entry", zip: makeZip(t, zipEntry{name: "a", data: make([]byte, 1025)}), wantErr: "over limit"},
		{name: "oversized total", zip: makeZip(t, zipEntry{name: "a", data: make([]byte, 1000)}, zipEntry{name: "b", data: make([]byte, 1000)}), wantErr: "over limit"},
		{name: "bomb declaring a small size", zip: lyingZip(t, "cwallet.sso", 100, 1<<20), wantErr: "cwallet.sso"},
		{name: "bomb declaring exactly the limit", zip: lyingZip(t, "cwallet.sso", 1<<10, 1<<20), wantErr: "cwallet.sso"},
		{name: "bomb declaring its size", zip: lyingZip(t, "cwallet.sso", 1<<20, 1<<20), wantErr: "declares"},
		{name: "not a zip", zip: []byte("this is not a zip"), wantErr: "wallet zip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromZip(tc.zip, lim)
			if tc.wantErr != "" {
				t.Logf("error: %v", err)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d files, want %d", len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if string(got[k]) != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}
