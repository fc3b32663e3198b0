package kubesecret

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/cesd/cesd/wallet"
)

// fakeSecrets is one namespace's Secrets in memory: Get, Create and Update,
// each failing with fail[verb] when set, counting the writes. onGet, when
// set, runs at the start of each Get with its context.
type fakeSecrets struct {
	corev1client.SecretInterface // any other call panics
	objs                         map[string]*corev1.Secret
	fail                         map[string]error
	writes                       int
	onGet                        func(ctx context.Context) error
}

func (f *fakeSecrets) Secrets(string) corev1client.SecretInterface { return f }

func (f *fakeSecrets) Get(ctx context.Context, name string, _ metav1.GetOptions) (*corev1.Secret, error) {
	if f.onGet != nil {
		if err := f.onGet(ctx); err != nil {
			return nil, err
		}
	}
	if err := f.fail["get"]; err != nil {
		return nil, err
	}
	s, ok := f.objs[name]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	return s.DeepCopy(), nil
}

func (f *fakeSecrets) Create(_ context.Context, s *corev1.Secret, _ metav1.CreateOptions) (*corev1.Secret, error) {
	if err := f.fail["create"]; err != nil {
		return nil, err
	}
	f.writes++
	f.objs[s.Name] = s.DeepCopy()
	return s, nil
}

func (f *fakeSecrets) Update(_ context.Context, s *corev1.Secret, _ metav1.UpdateOptions) (*corev1.Secret, error) {
	if err := f.fail["update"]; err != nil {
		return nil, err
	}
	f.writes++
	f.objs[s.Name] = s.DeepCopy()
	return s, nil
}

// fakeDisk numbers generations as wallet.Writer does and writes each one's
// files into a folder of its own.
type fakeDisk struct {
	dir   string
	live  int64
	after int64
	files map[string][]byte
}

func (d *fakeDisk) NumberAfter(n int64) { d.after = max(d.after, n) }
func (d *fakeDisk) Prune() error        { return nil }

func (d *fakeDisk) Write(p wallet.Payload) (wallet.Result, error) {
	if d.live > 0 && maps.EqualFunc(d.files, p.Files, func(a, b []byte) bool { return string(a) == string(b) }) {
		return wallet.Result{Generation: d.live, Dir: d.genDir(d.live)}, nil
	}
	gen := max(d.live, d.after) + 1
	if err := os.MkdirAll(d.genDir(gen), 0o700); err != nil {
		return wallet.Result{}, err
	}
	for name, b := range p.Files {
		if err := os.WriteFile(filepath.Join(d.genDir(gen), name), b, 0o600); err != nil {
			return wallet.Result{}, err
		}
	}
	manifest := fmt.Sprintf(`{"generation":%d}`, gen)
	if err := os.WriteFile(filepath.Join(d.genDir(gen), manifestKey), []byte(manifest), 0o600); err != nil {
		return wallet.Result{}, err
	}
	d.live, d.files = gen, p.Files
	return wallet.Result{Generation: gen, Swapped: true, Dir: d.genDir(gen)}, nil
}

func (d *fakeDisk) genDir(gen int64) string { return filepath.Join(d.dir, fmt.Sprint(gen)) }

func newFakes(t *testing.T, staged bool) (*Writer, *fakeSecrets, *fakeDisk) {
	t.Helper()
	api := &fakeSecrets{objs: map[string]*corev1.Secret{}, fail: map[string]error{}}
	sink, err := New(Config{Namespace: "ns", Name: "wallet"}, api, nil)
	if err != nil {
		t.Fatal(err)
	}
	disk := &fakeDisk{dir: t.TempDir()}
	return NewWriter(disk, sink, staged), api, disk
}

func payload(sso string) wallet.Payload {
	return wallet.Payload{Files: map[string][]byte{"cwallet.sso": []byte(sso)}}
}

// TestWriterContinuesTheSecretsNumbering: a leader whose staging folder is
// empty numbers its first generation above the Secret's, and an unchanged
// wallet writes nothing to the Secret.
func TestWriterContinuesTheSecretsNumbering(t *testing.T) {
	old, api, _ := newFakes(t, true)
	for _, sso := range []string{"a", "b", "c"} {
		if _, err := old.Write(payload(sso)); err != nil {
			t.Fatal(err)
		}
	}
	if got := api.objs["wallet"].Annotations[AnnotationGeneration]; got != "3" {
		t.Fatalf("generation annotation %q, want 3", got)
	}
	writes := api.writes

	// A new leader, its staging folder empty, fetches the same wallet.
	sink, err := New(Config{Namespace: "ns", Name: "wallet"}, api, nil)
	if err != nil {
		t.Fatal(err)
	}
	disk := &fakeDisk{dir: t.TempDir()}
	w := NewWriter(disk, sink, true)
	res, err := w.Write(payload("c"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 4 || api.writes != writes {
		t.Fatalf("unchanged wallet after takeover: staged %d, %d Secret writes, want 4 and none", res.Generation, api.writes-writes)
	}
	if got := api.objs["wallet"].Annotations[AnnotationGeneration]; got != "3" {
		t.Fatalf("generation annotation %q after an unchanged takeover, want 3", got)
	}
	// The next rotation goes above both.
	if res, err = w.Write(payload("d")); err != nil || res.Generation != 5 {
		t.Fatalf("rotation after takeover: %+v, %v", res, err)
	}
	if got := api.objs["wallet"].Annotations[AnnotationGeneration]; got != "5" {
		t.Fatalf("generation annotation %q, want 5", got)
	}
}

// TestWriterAnnouncesOncePublished: a folder swap whose publish failed is
// not a swap yet; the Write that publishes it reports the swap, once, and
// readiness (PublishErr) follows the Secret.
func TestWriterAnnouncesOncePublished(t *testing.T) {
	w, api, _ := newFakes(t, true)
	if w.PublishErr() != nil {
		t.Fatal("PublishErr before any write")
	}
	if res, err := w.Write(payload("a")); err != nil || !res.Swapped {
		t.Fatalf("first write: %+v, %v", res, err)
	}
	forbidden := apierrors.NewForbidden(corev1.Resource("secrets"), "wallet", errors.New("no"))
	api.fail["update"] = forbidden
	if _, err := w.Write(payload("b")); !apierrors.IsForbidden(err) {
		t.Fatalf("publish failure: %v", err)
	}
	if err := w.PublishErr(); !apierrors.IsForbidden(err) {
		t.Fatalf("PublishErr after a failed publish: %v", err)
	}
	if _, err := w.Write(payload("b")); err == nil {
		t.Fatal("still failing: no error")
	}
	delete(api.fail, "update")
	res, err := w.Write(payload("b"))
	if err != nil || !res.Swapped || res.Generation != 2 {
		t.Fatalf("publish of the waiting generation: %+v, %v; want generation 2 swapped", res, err)
	}
	if w.PublishErr() != nil || api.objs["wallet"].Annotations[AnnotationGeneration] != "2" {
		t.Fatalf("after publishing: %v, %v", w.PublishErr(), api.objs["wallet"].Annotations)
	}
	if res, err := w.Write(payload("b")); err != nil || res.Swapped {
		t.Fatalf("announced twice: %+v, %v", res, err)
	}
}

// TestPublishErrDoesNotWaitForAWrite: readiness (PublishErr) answers while
// a Write waits on a slow API server.
func TestPublishErrDoesNotWaitForAWrite(t *testing.T) {
	w, api, _ := newFakes(t, true)
	api.fail["update"] = errors.New("etcd timeout")
	if _, err := w.Write(payload("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload("b")); err == nil {
		t.Fatal("failing update: no error")
	}
	entered, release := make(chan struct{}), make(chan struct{})
	api.onGet = func(context.Context) error {
		close(entered)
		<-release
		return errors.New("still slow")
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		w.Write(payload("b")) //nolint:errcheck // the outcome is not this test's
	}()
	<-entered
	answered := make(chan error, 1)
	go func() { answered <- w.PublishErr() }()
	select {
	case err := <-answered:
		if err == nil || !strings.Contains(err.Error(), "etcd timeout") {
			t.Errorf("PublishErr during a Write: %v, want the last publish failure", err)
		}
	case <-time.After(10 * time.Second): // a failure bound, not a timing assertion
		t.Error("PublishErr waited for the Write in progress")
	}
	close(release)
	<-written
}

// TestWriterStagesNothingWithoutTheSecretsNumber: when the Secret cannot be
// read, nothing is staged (its number is unknown) and the error says so.
func TestWriterStagesNothingWithoutTheSecretsNumber(t *testing.T) {
	w, api, disk := newFakes(t, true)
	api.fail["get"] = errors.New("connection refused")
	if _, err := w.Write(payload("a")); err == nil || w.PublishErr() == nil {
		t.Fatalf("write with the API down: %v, PublishErr %v", err, w.PublishErr())
	}
	if disk.live != 0 {
		t.Fatalf("staged generation %d without the Secret's number", disk.live)
	}
}

// TestWalletDirGetsRotationsTheSecretCannotRead: with wallet_dir beside
// the Secret, an unreadable Secret keeps no rotation from the folder apps
// read; the Secret gets it, numbered above its own, once it can be read.
func TestWalletDirGetsRotationsTheSecretCannotRead(t *testing.T) {
	w, api, disk := newFakes(t, false)
	api.objs["wallet"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wallet", Annotations: map[string]string{AnnotationGeneration: "5"}},
		Data: map[string][]byte{"cwallet.sso": []byte("old")}}
	forbidden := apierrors.NewForbidden(corev1.Resource("secrets"), "wallet", errors.New("no"))
	api.fail["get"] = forbidden
	res, err := w.Write(payload("a"))
	if !apierrors.IsForbidden(err) || !apierrors.IsForbidden(w.PublishErr()) {
		t.Fatalf("write with get forbidden: %v, PublishErr %v", err, w.PublishErr())
	}
	if disk.live != 1 || res.Generation != 1 {
		t.Fatalf("wallet_dir after an unreadable Secret: live %d, %+v; want generation 1 live", disk.live, res)
	}
	delete(api.fail, "get")
	if res, err = w.Write(payload("a")); err != nil || !res.Swapped || w.PublishErr() != nil {
		t.Fatalf("once the Secret reads again: %+v, %v, %v", res, err, w.PublishErr())
	}
	if sec := api.objs["wallet"]; sec.Annotations[AnnotationGeneration] != "6" || string(sec.Data["cwallet.sso"]) != "a" {
		t.Fatalf("Secret %v %q, want generation 6 (above 5) holding a", sec.Annotations, sec.Data["cwallet.sso"])
	}
	if res, err = w.Write(payload("b")); err != nil || res.Generation != 7 {
		t.Fatalf("next rotation: %+v, %v; want generation 7", res, err)
	}

	t.Log("the number is known now: a failing get holds back no rotation, staged or not")
	for _, staged := range []bool{false, true} {
		w, api, disk := newFakes(t, staged)
		if _, err := w.Write(payload("a")); err != nil {
			t.Fatal(err)
		}
		api.fail["get"] = errors.New("connection refused")
		if _, err := w.Write(payload("b")); err == nil || disk.live != 2 {
			t.Fatalf("staged %v: rotation with get failing: live %d, %v; want 2 live and an error", staged, disk.live, err)
		}
		delete(api.fail, "get")
		if res, err := w.Write(payload("b")); err != nil || !res.Swapped || api.objs["wallet"].Annotations[AnnotationGeneration] != "2" {
			t.Fatalf("staged %v: after recovery %+v, %v, %v", staged, res, err, api.objs["wallet"].Annotations)
		}
	}
}

// TestTermEndAbortsAWrite: a Write waiting on the API server returns once
// the leader's term ends, and a Write after it writes nothing.
func TestTermEndAbortsAWrite(t *testing.T) {
	w, api, disk := newFakes(t, true)
	term, end := context.WithCancel(t.Context())
	w.Lead(term)
	entered := make(chan struct{})
	api.onGet = func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan error, 1)
	go func() { _, err := w.Write(payload("a")); done <- err }()
	<-entered
	end()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Write at the end of the term: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a failure bound, not a timing assertion
		t.Fatal("Write still waiting after the term ended")
	}
	api.onGet = nil
	if _, err := w.Write(payload("b")); !errors.Is(err, context.Canceled) || disk.live != 0 || api.writes != 0 {
		t.Fatalf("Write after the term: %v, live %d, %d Secret writes; want context.Canceled and nothing written", err, disk.live, api.writes)
	}
}

// TestPublishFencesANewerGeneration: a leader whose term ended, publishing
// late, does not roll back the generation a later leader numbered above
// its own; an unchanged content still writes nothing, and the same number
// (the leader putting back an edited Secret) is written.
func TestPublishFencesANewerGeneration(t *testing.T) {
	api := &fakeSecrets{objs: map[string]*corev1.Secret{}, fail: map[string]error{}}
	sink, err := New(Config{Namespace: "ns", Name: "wallet"}, api, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newer := Generation{Number: 5, Data: map[string][]byte{"cwallet.sso": []byte("new")}}
	if _, err := sink.Publish(ctx, newer); err != nil {
		t.Fatal(err)
	}
	writes := api.writes
	_, err = sink.Publish(ctx, Generation{Number: 4, Data: map[string][]byte{"cwallet.sso": []byte("old")}})
	if !errors.Is(err, ErrNewer) || !strings.Contains(err.Error(), "generation 5") || !strings.Contains(err.Error(), "write 4") {
		t.Fatalf("stale publish: %v, want ErrNewer naming 5 and 4", err)
	}
	if api.writes != writes || string(api.objs["wallet"].Data["cwallet.sso"]) != "new" {
		t.Fatalf("stale publish wrote the Secret: %q", api.objs["wallet"].Data["cwallet.sso"])
	}
	if wrote, err := sink.Publish(ctx, Generation{Number: 3, Data: newer.Data}); err != nil || wrote {
		t.Fatalf("unchanged content under a lower number: wrote %v, %v; want nothing and no error", wrote, err)
	}
	api.objs["wallet"].Data["cwallet.sso"] = []byte("edited")
	if wrote, err := sink.Publish(ctx, newer); err != nil || !wrote {
		t.Fatalf("putting back an edited Secret: wrote %v, %v", wrote, err)
	}
}

func TestGenerationAnnotation(t *testing.T) {
	for ann, want := range map[string]int64{"": 0, "7": 7, "-3": 0, "x": 0} {
		api := &fakeSecrets{objs: map[string]*corev1.Secret{}, fail: map[string]error{}}
		if ann != "" {
			api.objs["wallet"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wallet", Annotations: map[string]string{AnnotationGeneration: ann}}}
		}
		sink, err := New(Config{Namespace: "ns", Name: "wallet"}, api, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := sink.Generation(context.Background()); err != nil || got != want {
			t.Errorf("annotation %q: %d, %v; want %d", ann, got, err, want)
		}
	}
}

// TestWriterHeld: the generation and certificate end date the Secret holds,
// for the pipeline's refusal of an expired wallet; nothing held, no end
// date, or an unreadable Secret is not ok.
func TestWriterHeld(t *testing.T) {
	end := time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC)
	w, api, _ := newFakes(t, true)
	if _, _, ok := w.Held(context.Background()); ok {
		t.Fatal("held without a Secret")
	}
	api.objs["wallet"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wallet", Annotations: map[string]string{
		AnnotationGeneration: "5", AnnotationEndDate: end.Format(time.RFC3339)}}}
	if gen, got, ok := w.Held(context.Background()); !ok || gen != 5 || !got.Equal(end) {
		t.Fatalf("Held = %d, %v, %v", gen, got, ok)
	}
	delete(api.objs["wallet"].Annotations, AnnotationEndDate)
	if _, _, ok := w.Held(context.Background()); ok {
		t.Fatal("held without an end date")
	}
	api.fail["get"] = errors.New("connection refused")
	if _, _, ok := w.Held(context.Background()); ok {
		t.Fatal("held while the API is down")
	}
}

// TestOwnerReference: the Secret gets the owner once (an unchanged wallet
// and owner write nothing), a reference to an earlier Deployment of the same
// name is replaced, and other owners are kept.
func TestOwnerReference(t *testing.T) {
	api := &fakeSecrets{objs: map[string]*corev1.Secret{}, fail: map[string]error{}}
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "cesd", UID: "uid-2"}
	sink, err := New(Config{Namespace: "ns", Name: "wallet", Owner: &owner}, api, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := Generation{Number: 1, Data: map[string][]byte{"cwallet.sso": []byte("a")}}
	ctx := context.Background()
	if wrote, err := sink.Publish(ctx, g); err != nil || !wrote {
		t.Fatalf("first publish: %v, %v", wrote, err)
	}
	if refs := api.objs["wallet"].OwnerReferences; len(refs) != 1 || refs[0] != owner {
		t.Fatalf("owners %+v", refs)
	}
	if wrote, err := sink.Publish(ctx, g); err != nil || wrote {
		t.Fatalf("unchanged: wrote %v, %v", wrote, err)
	}
	other := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cesd", UID: "uid-x"}
	stale := owner
	stale.UID = "uid-1"
	api.objs["wallet"].OwnerReferences = []metav1.OwnerReference{other, stale}
	if wrote, err := sink.Publish(ctx, g); err != nil || !wrote {
		t.Fatalf("publish over a stale owner: %v, %v", wrote, err)
	}
	if refs := api.objs["wallet"].OwnerReferences; len(refs) != 2 || refs[0] != other || refs[1] != owner {
		t.Fatalf("owners %+v, want the other owner and the new Deployment", refs)
	}
}
