package wallet

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestSentAs: a sent file cesd renamed (an unusable ewallet.pem kept as
// ewallet.sent.pem) is marked in the manifest with the name CES sent it
// under, and that mark is part of what makes a generation unchanged.
func TestSentAs(t *testing.T) {
	p := testPayload(1)
	p.Files["ewallet.sent.pem"] = []byte("oracle's pem")
	p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte("derived pem"), Recipe: "test"}}
	p.SentAs = map[string]string{"ewallet.sent.pem": "ewallet.pem"}

	bad := []map[string]string{
		{"not-a-file.pem": "ewallet.pem"},
		{"ewallet.sent.pem": "../ewallet.pem"},
	}
	for _, sentAs := range bad {
		q := p
		q.SentAs = sentAs
		if _, err := q.Validate(DefaultLimits()); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("SentAs %v: err = %v, want ErrInvalidPayload", sentAs, err)
		}
	}

	dir := filepath.Join(t.TempDir(), "wallet")
	w := newTestWriter(t, dir, 3)
	if res, err := w.Write(p); err != nil || !res.Swapped {
		t.Fatalf("write: %v %v", res, err)
	}
	m, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi := m.Files["ewallet.sent.pem"]; fi.SentAs != "ewallet.pem" || fi.Derived {
		t.Fatalf("manifest ewallet.sent.pem = %+v", fi)
	}
	if fi := m.Files["ewallet.pem"]; fi.SentAs != "" || !fi.Derived {
		t.Fatalf("manifest ewallet.pem = %+v", fi)
	}
	if res, err := w.Write(p); err != nil || res.Swapped {
		t.Fatalf("same payload again: swapped=%v err=%v", res.Swapped, err)
	}
	q := p
	q.SentAs = nil
	if res, err := w.Write(q); err != nil || !res.Swapped {
		t.Fatalf("payload without the mark: swapped=%v err=%v, want a new generation", res.Swapped, err)
	}
}
