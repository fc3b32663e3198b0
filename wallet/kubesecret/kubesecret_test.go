package kubesecret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeGen(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadGenerationMapsSchemas(t *testing.T) {
	dir := writeGen(t, map[string]string{
		"cwallet.sso": "sso", "manifest.json": "{}", "credentials.json": `{"A":"pw"}`,
		"schemas/MFCS_RDS_CUSTOM": "pw", "schemas/RABE01USER": "pw2",
	})
	end := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	g, err := ReadGeneration(dir, 7, end)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cwallet.sso": "sso", "manifest.json": "{}", "credentials.json": `{"A":"pw"}`,
		"schemas.MFCS_RDS_CUSTOM": "pw", "schemas.RABE01USER": "pw2",
	}
	if len(g.Data) != len(want) {
		t.Fatalf("keys %v, want %v", g.Data, want)
	}
	for k, v := range want {
		if string(g.Data[k]) != v {
			t.Errorf("%s = %q, want %q", k, g.Data[k], v)
		}
	}
	if g.Number != 7 || !g.CertificateEndDate.Equal(end) {
		t.Errorf("generation %d, end %v", g.Number, g.CertificateEndDate)
	}
}

func TestReadGenerationRefuses(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"not a secret key":  {"wallet file": "x"},
		"schema not a key":  {"schemas/A$B": "x"},
		"schema collides":   {"schemas.A": "x", "schemas/A": "y"},
		"non-ASCII name":    {"zürich.ora": "x"},
		"nested other dirs": {"sub/file": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadGeneration(writeGen(t, files), 1, time.Time{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestContentHash(t *testing.T) {
	a := map[string][]byte{"cwallet.sso": []byte("x"), "manifest.json": []byte(`{"generation":1}`)}
	b := map[string][]byte{"cwallet.sso": []byte("x"), "manifest.json": []byte(`{"generation":9}`)}
	if ContentHash(a) != ContentHash(b) {
		t.Error("manifest.json changes the hash: replicas would rewrite each other's Secret")
	}
	// Length prefixes: moving bytes between key and value changes the hash.
	c := map[string][]byte{"ab": []byte("c")}
	d := map[string][]byte{"a": []byte("bc")}
	if ContentHash(c) == ContentHash(d) {
		t.Error("key/value boundary not in the hash")
	}
	if h := ContentHash(a); len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Errorf("hash %q", h)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no name":        {Namespace: "ns"},
		"no namespace":   {Name: "s"},
		"bad name":       {Namespace: "ns", Name: "Bad_Name"},
		"bad label":      {Namespace: "ns", Name: "s", Labels: map[string]string{"a b": "c"}},
		"bad label text": {Namespace: "ns", Name: "s", Labels: map[string]string{"a": "c d"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg, nil, nil); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
