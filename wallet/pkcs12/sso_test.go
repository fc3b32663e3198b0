package pkcs12

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cesd/cesd/ces/cestest"
)

// TestDecodeSSO reads both simulator layouts: Oracle's (format '6', a
// 16-byte password of 7-bit bytes with control bytes, a one-safe 3DES PFX)
// and the PBES2 one, and a trust-only format '7' wallet.
func TestDecodeSSO(t *testing.T) {
	f := newFixture(t, true)
	cas := []*x509.Certificate{f.ca}
	oracle, err := cestest.EncodeOracleSSO(f.key, f.leaf, cas)
	if err != nil {
		t.Fatal(err)
	}
	pbes2, err := cestest.EncodeSSO(f.key, f.leaf, cas)
	if err != nil {
		t.Fatal(err)
	}
	for name, sso := range map[string][]byte{"oracle": oracle, "pbes2": pbes2} {
		t.Run(name, func(t *testing.T) {
			c, err := DecodeSSO(sso)
			if err != nil {
				t.Fatal(err)
			}
			checkContents(t, c, f, true)
		})
	}

	password, _, err := ssoPassword(oracle)
	if err != nil {
		t.Fatal(err)
	}
	if oracle[3] != '6' || len(password) != 16 || !bytes.ContainsFunc(password, func(r rune) bool { return r < 0x20 }) ||
		bytes.ContainsFunc(password, func(r rune) bool { return r == 0 || r > 0x7f }) {
		t.Errorf("format %q, password of %d bytes: not Oracle's 16 7-bit bytes with control bytes", oracle[3], len(password))
	}

	trust, err := cestest.EncodeOracleSSO(nil, nil, cas)
	if err != nil {
		t.Fatal(err)
	}
	if trust[3] != '7' {
		t.Fatalf("trust-only format %q, want '7'", trust[3])
	}
	c, err := DecodeSSO(trust)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Keys) != 0 || len(c.Certs) != 1 || !c.Certs[0].Equal(f.ca) {
		t.Fatalf("trust-only: %d keys, %d certificates", len(c.Keys), len(c.Certs))
	}
}

// TestSSOHeaders covers the header variants go-ora reads, format '7' and the
// old DES type '5', by re-wrapping the PKCS#12 of a simulator SSO.
func TestSSOHeaders(t *testing.T) {
	f := newFixture(t, false)
	sso, err := cestest.EncodeSSO(f.key, f.leaf, []*x509.Certificate{f.ca})
	if err != nil {
		t.Fatal(err)
	}
	password, pfx, err := ssoPassword(sso)
	if err != nil {
		t.Fatal(err)
	}
	v7 := bytes.Clone(sso)
	v7[3] = '7'
	if _, err := DecodeSSO(v7); err != nil {
		t.Errorf("format 7: %v", err)
	}
	des := desHeader(t, password)
	if _, err := DecodeSSO(append(des, pfx...)); err != nil {
		t.Errorf("DES header: %v", err)
	}
	bad := bytes.Clone(sso)
	binary.BigEndian.PutUint32(bad[4:8], 5)
	if _, err := DecodeSSO(bad); err == nil || !strings.Contains(err.Error(), "header version") {
		t.Errorf("header version 5: %v", err)
	}
	local := bytes.Clone(sso)
	local[3] = '8'
	if _, err := DecodeSSO(local); !errors.Is(err, ErrLocalAutoLogin) {
		t.Errorf("format 8: %v, want ErrLocalAutoLogin", err)
	}
}

// The seed corpora in testdata/fuzz are wallets the simulator makes, in
// Oracle's layout and the go-pkcs12 one; testdata/gen writes them.
//go:generate go run ./testdata/gen

func FuzzDecodeSSO(f *testing.F) {
	f.Add([]byte{0xa1, 0xf8, 0x4e, '6', 0, 0, 0, 6, 0, 0, 0, 33, 6})
	f.Add([]byte{0xa1, 0xf8, 0x4e, '6', 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, '5'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeSSO(b)
		if err == nil && c == nil {
			t.Fatal("nil contents without error")
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03}, "")
	f.Fuzz(func(t *testing.T, der []byte, password string) {
		c, err := Decode(der, []byte(password))
		if err == nil && c == nil {
			t.Fatal("nil contents without error")
		}
	})
}

// TestFuzzSeedsOpen keeps the seed corpora meaningful: every seed is a
// wallet the reader opens, key and certificates included.
func TestFuzzSeedsOpen(t *testing.T) {
	for _, fuzz := range []string{"FuzzDecodeSSO", "FuzzDecode"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", fuzz, "*"))
		if err != nil || len(files) < 3 {
			t.Fatalf("%s: %d seeds (%v)", fuzz, len(files), err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var c *Contents
			if fuzz == "FuzzDecodeSSO" {
				c, err = DecodeSSO([]byte(data))
			} else {
				pw, _ := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "string("), ")"))
				c, err = Decode([]byte(data), []byte(pw))
			}
			if err != nil || len(c.Certs) == 0 || (len(c.Keys) == 0) != strings.Contains(file, "trust-only") {
				t.Errorf("%s: %v", file, err)
			}
		}
	}
}
