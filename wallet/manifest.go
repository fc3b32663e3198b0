package wallet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Manifest is manifest.json: a description of one generation with no secrets.
type Manifest struct {
	Generation           int64               `json:"generation"`
	WalletName           string              `json:"walletName"`
	CertificateStartDate time.Time           `json:"certificateStartDate"`
	CertificateEndDate   time.Time           `json:"certificateEndDate"`
	LastRotationDate     time.Time           `json:"lastRotationDate"`
	FetchedAt            time.Time           `json:"fetchedAt"`
	Files                map[string]FileInfo `json:"files"`
	Schemas              []string            `json:"schemas"` // sorted names, never passwords
}

// FileInfo describes one file of a generation. Derived files were computed by
// cesd, not sent by CES; SourceSHA256 names the wallet file they came from.
// Every other file holds the bytes CES sent, under the name it sent them,
// unless SentAs names another: then cesd renamed it to give that name to a
// derived file (an ewallet.pem whose key nobody could open).
type FileInfo struct {
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
	SentAs       string `json:"sentAs,omitempty"`
	Derived      bool   `json:"derived,omitempty"`
	SourceSHA256 string `json:"sourceSha256,omitempty"`
	Recipe       string `json:"recipe,omitempty"`
}

// ErrNoWallet means the folder has no live generation (no ..data link).
var ErrNoWallet = errors.New("no live wallet generation")

// resolveLive reads ..data once and returns the live generation's folder name
// ("..N") and number. The link must name a generation folder inside dir.
func resolveLive(dir string) (string, int64, error) {
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("%s: %w", dir, ErrNoWallet)
	}
	if err != nil {
		return "", 0, fmt.Errorf("read %s link: %w", dataLink, err)
	}
	n, ok := parseGen(target)
	if !ok {
		return "", 0, fmt.Errorf("%s link points to %q, not a generation folder", dataLink, target)
	}
	return target, n, nil
}

// ReadManifest reads the live generation's manifest.json through ..data.
func ReadManifest(dir string) (*Manifest, error) {
	gen, _, err := resolveLive(dir)
	if err != nil {
		return nil, err
	}
	return readManifestFile(filepath.Join(dir, gen, manifestFile))
}

func readManifestFile(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", path, err)
	}
	for name, fi := range m.Files {
		if err := ValidateName(name); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", path, err)
		}
		if fi.SentAs != "" {
			if err := ValidateName(fi.SentAs); err != nil {
				return nil, fmt.Errorf("manifest %s: %s sent as: %w", path, name, err)
			}
		}
	}
	for _, s := range m.Schemas {
		if err := ValidateName(s); err != nil {
			return nil, fmt.Errorf("manifest %s: schema: %w", path, err)
		}
	}
	return &m, nil
}

// Check is what Inspect found in the live generation.
type Check struct {
	Dir      string // the live generation folder, resolved once
	Manifest *Manifest
	Files    []FileCheck // one per manifest file, sorted by name
	Problems []string    // every mismatch, naming files, never content
	Mounted  bool        // a Secret fleet mode wrote, as the kubelet mounts it
}

// FileCheck is one file of the live generation against its manifest entry.
type FileCheck struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	SentAs  string `json:"sentAs,omitempty"`
	Derived bool   `json:"derived,omitempty"`
	Matches bool   `json:"matchesManifest"`
}

// SecretSchemaPrefix replaces "schemas/" in a schema password file's name
// where one folder must hold every file: a Kubernetes Secret's keys, and so
// the folder the kubelet mounts it as.
const SecretSchemaPrefix = "schemas."

// kubeletData is the name the kubelet's atomic writer gives the folder that
// ..data points at in a mounted Secret: "..2006_01_02_15_04_05." and a
// random number (MkdirTemp).
var kubeletData = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

// Inspect resolves ..data once and compares the live generation with its
// manifest: every file's size and sha256, and that credentials.json and
// schemas/ hold exactly the manifest's schema names. An error means there is
// no readable generation; mismatches are in Check.Problems.
//
// dir may also be a Secret that fleet mode wrote, as the kubelet mounts it:
// ..data then names the kubelet's folder, not a generation, and the schema
// files are schemas.<NAME> (Check.Mounted).
func Inspect(dir string) (*Check, error) {
	gen, n, err := resolveLive(dir)
	mounted := false
	if err != nil {
		target, lerr := os.Readlink(filepath.Join(dir, dataLink))
		if lerr != nil || !kubeletData.MatchString(target) {
			return nil, err
		}
		gen, mounted = target, true
	}
	genDir := filepath.Join(dir, gen)
	m, err := readManifestFile(filepath.Join(genDir, manifestFile))
	if err != nil {
		return nil, err
	}
	c := &Check{Dir: genDir, Manifest: m, Mounted: mounted}
	if !mounted && m.Generation != n {
		c.Problems = append(c.Problems, fmt.Sprintf("%s: manifest says generation %d", gen, m.Generation))
	}
	for _, name := range sortedKeys(m.Files) {
		want := m.Files[name]
		fc := FileCheck{Name: name, SentAs: want.SentAs, Derived: want.Derived}
		var err error
		fc.SHA256, fc.Size, err = hashFile(filepath.Join(genDir, name))
		switch {
		case err != nil:
			c.Problems = append(c.Problems, fmt.Sprintf("%s (%v)", quoteName(name), err))
		case fc.Size != want.Size:
			c.Problems = append(c.Problems, fmt.Sprintf("%s (size %d, manifest %d)", quoteName(name), fc.Size, want.Size))
		case fc.SHA256 != want.SHA256:
			c.Problems = append(c.Problems, fmt.Sprintf("%s (sha256 differs)", quoteName(name)))
		default:
			fc.Matches = true
		}
		c.Files = append(c.Files, fc)
	}
	if creds, err := readCredentials(filepath.Join(genDir, credsFile)); err != nil {
		c.Problems = append(c.Problems, credsFile+" ("+err.Error()+")")
	} else if !slices.Equal(sortedKeys(creds), m.Schemas) {
		c.Problems = append(c.Problems, credsFile+" (schema names differ from manifest)")
	}
	for _, s := range m.Schemas {
		prefix := schemasDir + "/"
		if mounted {
			prefix = SecretSchemaPrefix
		}
		fi, err := os.Lstat(filepath.Join(genDir, prefix+s))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			c.Problems = append(c.Problems, fmt.Sprintf("%s%s (missing or empty)", prefix, quoteName(s)))
		}
	}
	return c, nil
}

// Verify is Inspect as a single error: nil only when the live generation is
// complete and matches its manifest. The error names every file that does
// not match (never content or passwords).
func Verify(dir string) (*Manifest, error) {
	c, err := Inspect(dir)
	if err != nil {
		return nil, err
	}
	if c.Mounted { // cesd never writes a folder like that: not one of its own
		return nil, fmt.Errorf("%s is a mounted Kubernetes Secret, not a folder cesd writes", dir)
	}
	if len(c.Problems) > 0 {
		return c.Manifest, fmt.Errorf("verify generation %d: mismatching files: %s", c.Manifest.Generation, strings.Join(c.Problems, ", "))
	}
	return c.Manifest, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// readCredentials parses credentials.json. Its errors never wrap the JSON
// decoder's, which can quote a character of the file.
func readCredentials(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return nil, errors.New("not a JSON object of strings")
	}
	return m, nil
}
