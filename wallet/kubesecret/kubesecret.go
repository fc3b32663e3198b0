// Package kubesecret writes wallet generations into one Kubernetes Secret:
// the fleet-mode sink. It sits behind the refresh pipeline as one more
// writer (Writer wraps the disk writer): a generation is validated and
// written to disk first, exactly as without it, and the Secret then gets the
// live generation's bytes as they are on disk. Pods mount the Secret and the
// kubelet's own atomic writer distributes every rotation.
//
// Key mapping: a file at the top of the generation keeps its name; a schema
// password file schemas/<NAME> becomes the key "schemas.<NAME>", since a
// Secret key cannot hold a slash. A name that is no valid Secret key
// ([-._a-zA-Z0-9]+), or two files mapping to one key, fail the write and
// leave the Secret as it was.
package kubesecret

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/cesd/cesd/wallet"
)

// Annotations cesd sets on the Secret.
const (
	AnnotationGeneration = "cesd.io/generation"
	AnnotationEndDate    = "cesd.io/certificate-end-date"
	AnnotationHash       = "cesd.io/content-sha256"
)

// ErrNewer is the error of a publish that meets a newer generation in the
// Secret: a later leader wrote it, and this replica (a leader whose term
// ended) must not roll it back.
var ErrNewer = errors.New("the Secret holds a newer generation")

// manifestKey is left out of the content hash: it names the writing
// replica's own generation number and fetch time, so two replicas holding
// the same wallet would otherwise rewrite each other's Secret.
const manifestKey = "manifest.json"

// SchemaKeyPrefix replaces "schemas/" in the keys of schema password files.
const SchemaKeyPrefix = wallet.SecretSchemaPrefix

// Config names the Secret and what cesd adds to it.
type Config struct {
	Namespace string
	Name      string
	// Labels are set on the Secret (secret_labels); other labels are kept.
	Labels map[string]string
	// Owner, if set, is made the Secret's owner (the cesd Deployment), so
	// deleting the Deployment deletes the Secret.
	Owner *metav1.OwnerReference
	// Timeout bounds one publish, retries included; default 30s.
	Timeout time.Duration
}

// Sink keeps one Secret equal to the live generation.
type Sink struct {
	cfg     Config
	secrets corev1client.SecretInterface
	log     *zap.Logger
}

// New returns a sink writing through client (a typed core/v1 client).
func New(cfg Config, client corev1client.SecretsGetter, log *zap.Logger) (*Sink, error) {
	if cfg.Name == "" || cfg.Namespace == "" {
		return nil, errors.New("kubesecret: secret name and namespace are required")
	}
	if errs := validation.IsDNS1123Subdomain(cfg.Name); len(errs) > 0 {
		return nil, fmt.Errorf("kubesecret: secret_name %q: %s", cfg.Name, strings.Join(errs, "; "))
	}
	for k, v := range cfg.Labels {
		if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			return nil, fmt.Errorf("kubesecret: secret_labels %q: %s", k, strings.Join(errs, "; "))
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Sink{cfg: cfg, secrets: client.Secrets(cfg.Namespace), log: log}, nil
}

// Check reads the Secret as the leader does before each write: a follower
// proves with it, ahead of a takeover, that its credentials and the Role
// reach the Secret.
func (s *Sink) Check(ctx context.Context) error {
	if _, err := s.secrets.Get(ctx, s.cfg.Name, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("kubesecret: get secret %s/%s: %w", s.cfg.Namespace, s.cfg.Name, err)
	}
	return nil
}

// Generation is one wallet generation as Secret data.
type Generation struct {
	Number             int64
	CertificateEndDate time.Time
	Data               map[string][]byte
}

// ReadGeneration reads a generation folder (wallet.Result.Dir) into Secret
// data: its top-level files and schemas/<NAME> as "schemas.<NAME>".
func ReadGeneration(dir string, number int64, endDate time.Time) (Generation, error) {
	g := Generation{Number: number, CertificateEndDate: endDate, Data: map[string][]byte{}}
	add := func(key, path string) error {
		if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
			return fmt.Errorf("%q cannot be a Secret key: %s", key, strings.Join(errs, "; "))
		}
		if _, dup := g.Data[key]; dup {
			return fmt.Errorf("two files map to the Secret key %q", key)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		g.Data[key] = b
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return g, fmt.Errorf("read generation: %w", err)
	}
	for _, e := range entries {
		switch {
		case e.IsDir() && e.Name() == "schemas":
			schemas, err := os.ReadDir(filepath.Join(dir, e.Name()))
			if err != nil {
				return g, fmt.Errorf("read generation: %w", err)
			}
			for _, s := range schemas {
				if !s.Type().IsRegular() {
					return g, fmt.Errorf("read generation: schemas/%s is not a regular file", s.Name())
				}
				if err := add(SchemaKeyPrefix+s.Name(), filepath.Join(dir, e.Name(), s.Name())); err != nil {
					return g, fmt.Errorf("read generation: %w", err)
				}
			}
		case e.Type().IsRegular():
			if err := add(e.Name(), filepath.Join(dir, e.Name())); err != nil {
				return g, fmt.Errorf("read generation: %w", err)
			}
		default:
			return g, fmt.Errorf("read generation: %s is neither a file nor schemas/", e.Name())
		}
	}
	return g, nil
}

// ContentHash is the SHA-256 of every key and value but manifest.json, in
// key order, each length-prefixed so no two contents share a hash input.
func ContentHash(data map[string][]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if k == manifestKey {
			continue
		}
		for _, b := range [][]byte{[]byte(k), data[k]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Publish makes the Secret hold g, in one create or update carrying the
// whole object, so a reader never sees a mix of generations. An update that
// meets a newer resourceVersion (someone else wrote in between) is retried
// on a fresh read. It writes nothing, and returns false, when the Secret
// already holds g's content, labels and owner; it writes nothing, and
// returns ErrNewer, when the Secret holds a generation numbered above g's.
func (s *Sink) Publish(ctx context.Context, g Generation) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	hash := ContentHash(g.Data)
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.secrets.Get(ctx, s.cfg.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = s.secrets.Create(ctx, s.desired(&corev1.Secret{}, g, hash), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) { // created meanwhile: read it again
				return apierrors.NewConflict(corev1.Resource("secrets"), s.cfg.Name, err)
			}
			wrote = err == nil
			return err
		}
		if err != nil {
			return err
		}
		if s.current(cur, g, hash) {
			return nil
		}
		if held := generationOf(cur); held > g.Number {
			return fmt.Errorf("%w: it holds generation %d, this replica would write %d", ErrNewer, held, g.Number)
		}
		_, err = s.secrets.Update(ctx, s.desired(cur.DeepCopy(), g, hash), metav1.UpdateOptions{})
		wrote = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("secret %s/%s: %w", s.cfg.Namespace, s.cfg.Name, err)
	}
	if wrote {
		s.log.Info("secret updated", zap.String("secret", s.cfg.Name), zap.Int64("generation", g.Number),
			zap.String("content_sha256", hash))
	}
	return wrote, nil
}

// current reports whether cur already holds g: the same keys with the same
// bytes (manifest.json aside: only its presence counts), the hash
// annotation, the labels and the owner.
func (s *Sink) current(cur *corev1.Secret, g Generation, hash string) bool {
	if cur.Annotations[AnnotationHash] != hash || len(cur.Data) != len(g.Data) || len(cur.StringData) > 0 {
		return false
	}
	for k, v := range g.Data {
		got, ok := cur.Data[k]
		if !ok || (k != manifestKey && string(got) != string(v)) {
			return false
		}
	}
	for k, v := range s.cfg.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	return s.cfg.Owner == nil || slices.Equal(withOwner(cur.OwnerReferences, *s.cfg.Owner), cur.OwnerReferences)
}

// desired turns sec (a copy of the current object, resourceVersion kept)
// into the Secret for g: all of g's data and nothing else.
func (s *Sink) desired(sec *corev1.Secret, g Generation, hash string) *corev1.Secret {
	sec.Name, sec.Namespace = s.cfg.Name, s.cfg.Namespace
	sec.Type = corev1.SecretTypeOpaque
	sec.Data = g.Data
	sec.StringData = nil
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[AnnotationGeneration] = strconv.FormatInt(g.Number, 10)
	sec.Annotations[AnnotationHash] = hash
	if g.CertificateEndDate.IsZero() {
		delete(sec.Annotations, AnnotationEndDate)
	} else {
		sec.Annotations[AnnotationEndDate] = g.CertificateEndDate.UTC().Format(time.RFC3339)
	}
	if len(s.cfg.Labels) > 0 && sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	maps.Copy(sec.Labels, s.cfg.Labels)
	if o := s.cfg.Owner; o != nil {
		sec.OwnerReferences = withOwner(sec.OwnerReferences, *o)
	}
	return sec
}

// Generation reads the generation number the Secret holds (its
// cesd.io/generation annotation): 0 when the Secret does not exist yet or
// carries no number cesd wrote.
func (s *Sink) Generation(ctx context.Context) (int64, error) {
	n, _, err := s.held(ctx)
	return n, err
}

// held reads the Secret's generation number and certificate end date (zero
// when absent or not cesd's).
func (s *Sink) held(ctx context.Context) (int64, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cur, err := s.secrets.Get(ctx, s.cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("secret %s/%s: %w", s.cfg.Namespace, s.cfg.Name, err)
	}
	end, _ := time.Parse(time.RFC3339, cur.Annotations[AnnotationEndDate])
	return generationOf(cur), end, nil
}

// generationOf is sec's generation number; 0 when absent or edited by hand
// (nothing to continue from).
func generationOf(sec *corev1.Secret) int64 {
	n, err := strconv.ParseInt(sec.Annotations[AnnotationGeneration], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// withOwner is refs with o among them, and without a reference to an
// earlier object of o's kind and name (a Deployment deleted with orphans
// and created again has a new UID); other owners are kept.
func withOwner(refs []metav1.OwnerReference, o metav1.OwnerReference) []metav1.OwnerReference {
	out := make([]metav1.OwnerReference, 0, len(refs)+1)
	found := false
	for _, r := range refs {
		switch {
		case r.UID == o.UID:
			found = true
		case r.APIVersion == o.APIVersion && r.Kind == o.Kind && r.Name == o.Name:
			continue
		}
		out = append(out, r)
	}
	if !found {
		out = append(out, o)
	}
	return out
}

// DiskWriter is the folder writer Writer wraps (*wallet.Writer): the
// wallet folder, or the private staging folder in Secret-only mode.
type DiskWriter interface {
	Write(p wallet.Payload) (wallet.Result, error)
	Prune() error
	NumberAfter(n int64)
}

// Writer writes each payload to its folder, then the live generation to the
// Secret. It satisfies the refresh pipeline's Writer (and Pruner), so the
// pipeline validates and derives exactly as without a Secret. For the
// pipeline a generation is swapped in once it is live in both places: a
// folder swap whose publish failed is reported as a swap by the Write that
// publishes it, so the observers of a swap hear of it once the Secret holds
// it.
//
// A Writer lives for one leader's term (losing the Lease ends the process),
// and is the Secret's only writer meanwhile: it reads the Secret's
// generation number once, and numbers everything it writes above it.
type Writer struct {
	disk DiskWriter
	sink *Sink
	// staged: disk is Secret-only mode's private staging folder, not a
	// folder apps read.
	staged bool

	// term is the context of Writes (Lead); nil: context.Background().
	term atomic.Pointer[context.Context]

	mu sync.Mutex // serialises Writes
	// floor is the generation number the Secret held when this Writer first
	// read it; known says it has been read.
	floor int64
	known bool
	// unannounced is a generation swapped in on disk whose publish failed;
	// 0: none.
	unannounced int64
	// publishErr is why the last Write could not make the Secret hold the
	// live generation; nil when it does. It is not under mu: readiness reads
	// it while a Write may wait on the API server for a minute.
	publishErr atomic.Pointer[error]
}

// NewWriter returns a Writer over disk and sink. staged says disk is a
// private staging folder (Secret-only mode) rather than wallet_dir.
func NewWriter(disk DiskWriter, sink *Sink, staged bool) *Writer {
	return &Writer{disk: disk, sink: sink, staged: staged}
}

// Lead makes ctx, the leader's term, the context of every later Write, so
// that the end of the term aborts a Write in flight: a leader that lost the
// Lease must not go on writing. Without Lead (a Secret without a Lease, one
// writer by configuration) Writes are bounded by the Sink's timeout alone.
func (w *Writer) Lead(ctx context.Context) { w.term.Store(&ctx) }

// Write
//  1. reads the Secret's generation number, once per Writer, and has the
//     folder number new generations above it, so that a leader taking over
//     never makes the Secret's number go backwards;
//  2. writes p to the folder, validating it first: an invalid payload
//     touches neither folder nor Secret;
//  3. publishes the live generation, also when the folder was unchanged, so
//     that a Secret edited or deleted by someone else is put back at the
//     next refresh, and an unchanged wallet (a new leader's first fetch)
//     writes nothing.
//
// When the Secret's number cannot be read, a wallet_dir apps read still
// gets the rotation (numbered by the folder), and the Secret waits for a
// later Write that reads its number. A staging folder gets nothing: its
// numbering would restart below the Secret's, and the Secret is its only
// reader.
//
// A failure is an error, so the daemon retries; the folder's generation
// stays live, and is reported swapped once a later Write publishes it.
func (w *Writer) Write(p wallet.Payload) (wallet.Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx := context.Background()
	if t := w.term.Load(); t != nil {
		ctx = *t
	}
	if err := ctx.Err(); err != nil {
		return wallet.Result{}, fmt.Errorf("kubernetes secret: the leader's term ended, nothing written: %w", err)
	}
	readErr := w.readFloor(ctx)
	if readErr != nil && w.staged {
		w.setPublishErr(readErr)
		return wallet.Result{}, fmt.Errorf("kubernetes secret: nothing staged: %w", readErr)
	}
	res, err := w.disk.Write(p)
	if err != nil {
		return res, err
	}
	if res.Swapped {
		w.unannounced = res.Generation
	}
	err = readErr
	if err == nil {
		var g Generation
		g, err = ReadGeneration(res.Dir, w.number(res.Generation), p.CertificateEndDate)
		if err == nil {
			_, err = w.sink.Publish(ctx, g)
		}
	}
	if err != nil {
		w.setPublishErr(fmt.Errorf("the Secret may not hold generation %d: %w", res.Generation, err))
		return res, fmt.Errorf("kubernetes secret (generation %d is live on disk, not yet in the Secret): %w", res.Generation, err)
	}
	w.setPublishErr(nil)
	if w.unannounced == res.Generation {
		res.Swapped = true
	}
	w.unannounced = 0
	return res, nil
}

// readFloor reads the Secret's number unless this Writer knows it already.
func (w *Writer) readFloor(ctx context.Context) error {
	if w.known {
		return nil
	}
	n, err := w.sink.Generation(ctx)
	if err != nil {
		return fmt.Errorf("read the Secret's generation number: %w", err)
	}
	w.floor, w.known = n, true
	w.disk.NumberAfter(n)
	return nil
}

// number is the number the Secret gets for the folder's generation gen.
// It is gen, unless gen was written before the Secret's number was known
// (wallet_dir, the Secret unreadable at first) and lies at or below it:
// then the Secret's number still goes up, past the folder's, and the next
// generation is numbered above that.
func (w *Writer) number(gen int64) int64 {
	if gen > w.floor {
		return gen
	}
	w.disk.NumberAfter(w.floor + 1)
	return w.floor + 1
}

// Held reads the generation the Secret holds and its certificate end date,
// so that the pipeline refuses an expired wallet that would replace a valid
// one there (a new leader's staging folder holds nothing to compare with).
// ok is false when the Secret holds no generation with an end date, or
// cannot be read.
func (w *Writer) Held(ctx context.Context) (int64, time.Time, bool) {
	n, end, err := w.sink.held(ctx)
	return n, end, err == nil && n > 0 && !end.IsZero()
}

// PublishErr says why the Secret may not hold the live generation: the last
// Write failed to read or write it. nil once a Write published it (and
// before the first Write: the folder then speaks for itself).
// It never waits for a Write in progress.
func (w *Writer) PublishErr() error {
	if p := w.publishErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) setPublishErr(err error) {
	if err == nil {
		w.publishErr.Store(nil)
		return
	}
	w.publishErr.Store(&err)
}

// Prune prunes old generations on disk; the Secret holds only one.
func (w *Writer) Prune() error { return w.disk.Prune() }
