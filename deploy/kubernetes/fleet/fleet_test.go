//go:build kube

// Package fleet_test runs fleet mode against a real kube-apiserver and etcd
// (no fake clientset): two real `cesd run` processes in Secret-only mode,
// as the shipped ConfigMap runs them, each with a ServiceAccount token
// minted by the TokenRequest API and bound by the shipped rbac.yaml, elect a
// leader and keep the Secret, owned by the shipped Deployment, equal to what
// the CES simulator serves, through rotations, an external edit, a SIGKILL
// of the leader and a drain (SIGTERM) of the next one. The follower stays
// warm (its own IAM token, its checks), and CES's callbacks reach the
// leader through the EndpointSlice it points at itself (callback_service),
// forwarded by a stand-in for kube-proxy (podNet).
//
//	CESD_KUBE_APISERVER=$(scripts/kube-apiserver.sh) go test -tags kube ./deploy/kubernetes/fleet
package fleet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/kuberoute"
	"github.com/cesd/cesd/deploy/internal/fieldtest"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/kubesecret"
)

const (
	ns         = "fleet"
	secretName = "oracle-wallet"
	// callbackService is the Service of service.yaml and endpointslice.yaml.
	callbackService = "cesd-callback"
	leaseName       = "cesd"
)

func TestFleet(t *testing.T) {
	k, admin, token := startFleetNamespace(t)
	ctx := context.Background()
	sa := k.client(t, token)
	owner, err := admin.AppsV1().Deployments(ns).Get(ctx, "cesd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("role denies every other secret", func(t *testing.T) {
		if _, err := sa.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{}); err != nil {
			t.Fatalf("get %s: %v", secretName, err)
		}
		other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, StringData: map[string]string{"k": "v"}}
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		denied := map[string]error{}
		_, denied["get other"] = sa.CoreV1().Secrets(ns).Get(ctx, "other", metav1.GetOptions{})
		_, denied["list"] = sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		_, denied["watch"] = sa.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{})
		_, denied["create"] = sa.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{})
		denied["delete own"] = sa.CoreV1().Secrets(ns).Delete(ctx, secretName, metav1.DeleteOptions{})
		_, denied["get in default"] = sa.CoreV1().Secrets("default").Get(ctx, secretName, metav1.GetOptions{})
		_, denied["update other"] = sa.CoreV1().Secrets(ns).Update(ctx, other, metav1.UpdateOptions{})
		_, denied["get other lease"] = sa.CoordinationV1().Leases(ns).Get(ctx, "other", metav1.GetOptions{})
		_, denied["list configmaps"] = sa.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		// cesd gets and updates whole objects; nothing it runs patches.
		mark := []byte(`{"metadata":{"labels":{"x":"y"}}}`)
		_, denied["patch own secret"] = sa.CoreV1().Secrets(ns).Patch(ctx, secretName, types.MergePatchType, mark, metav1.PatchOptions{})
		_, denied["patch own lease"] = sa.CoordinationV1().Leases(ns).Patch(ctx, leaseName, types.MergePatchType, mark, metav1.PatchOptions{})
		_, denied["patch own endpointslice"] = sa.DiscoveryV1().EndpointSlices(ns).Patch(ctx, callbackService, types.MergePatchType, mark, metav1.PatchOptions{})
		// secret_owner reads the cesd Deployment, and may do nothing else to
		// Deployments.
		if _, err := sa.AppsV1().Deployments(ns).Get(ctx, "cesd", metav1.GetOptions{}); err != nil {
			t.Fatalf("get deployment cesd: %v", err)
		}
		deployments := sa.AppsV1().Deployments(ns)
		_, denied["get other deployment"] = deployments.Get(ctx, "my-app", metav1.GetOptions{})
		_, denied["list deployments"] = deployments.List(ctx, metav1.ListOptions{})
		_, denied["watch deployments"] = deployments.Watch(ctx, metav1.ListOptions{})
		_, denied["update own deployment"] = deployments.Update(ctx, owner, metav1.UpdateOptions{})
		_, denied["patch own deployment"] = deployments.Patch(ctx, "cesd", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
		// What blockOwnerDeletion=true would need under the
		// OwnerReferencesPermissionEnforcement admission plugin.
		denied["update own deployment's finalizers"] = sa.AppsV1().RESTClient().Put().Namespace(ns).
			Resource("deployments").Name("cesd").SubResource("finalizers").Body(owner).Do(ctx).Error()
		_, denied["scale own deployment"] = deployments.GetScale(ctx, "cesd", metav1.GetOptions{})
		denied["delete own deployment"] = deployments.Delete(ctx, "cesd", metav1.DeleteOptions{})
		_, denied["get deployment in default"] = sa.AppsV1().Deployments("default").Get(ctx, "cesd", metav1.GetOptions{})
		// callback_service gets and updates its one EndpointSlice, nothing else.
		otherSlice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "other",
			Labels: map[string]string{discoveryv1.LabelServiceName: "other"}}, AddressType: discoveryv1.AddressTypeIPv4}
		if _, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, otherSlice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		slices := sa.DiscoveryV1().EndpointSlices(ns)
		if _, err := slices.Get(ctx, callbackService, metav1.GetOptions{}); err != nil {
			t.Fatalf("get endpointslice %s: %v", callbackService, err)
		}
		_, denied["get other endpointslice"] = slices.Get(ctx, "other", metav1.GetOptions{})
		_, denied["update other endpointslice"] = slices.Update(ctx, otherSlice, metav1.UpdateOptions{})
		_, denied["list endpointslices"] = slices.List(ctx, metav1.ListOptions{})
		_, denied["watch endpointslices"] = slices.Watch(ctx, metav1.ListOptions{})
		_, denied["create endpointslice"] = slices.Create(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "new"}, AddressType: discoveryv1.AddressTypeIPv4}, metav1.CreateOptions{})
		denied["delete own endpointslice"] = slices.Delete(ctx, callbackService, metav1.DeleteOptions{})
		_, denied["get endpointslice in default"] = sa.DiscoveryV1().EndpointSlices("default").Get(ctx, callbackService, metav1.GetOptions{})
		_, denied["list services"] = sa.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		for what, err := range denied {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want Forbidden, got %v", what, err)
			}
		}
	})

	t.Run("every shipped manifest passes a server-side dry run", func(t *testing.T) {
		const dry = "dryrun"
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dry}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob("../*.yaml")
		more, _ := filepath.Glob("*.yaml")
		n := 0
		for _, f := range append(files, more...) {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			for _, obj := range decode(t, f) {
				if err := createIn(ctx, admin, dry, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
					t.Errorf("%s: %v", f, err)
				}
				n++
			}
		}
		if n < 16 {
			t.Errorf("only %d objects dry-run", n)
		}
	})

	t.Run("an edit between read and write is a conflict, retried", func(t *testing.T) {
		testConflict(t, admin, sa)
	})

	t.Run("the route points the EndpointSlice with the Role's rights, and again writes nothing", func(t *testing.T) {
		r, err := kuberoute.New(kuberoute.Config{Namespace: ns, Service: callbackService, Address: "10.0.9.9", Pod: "cesd-z", Port: 8480}, sa.DiscoveryV1(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Check(ctx); err != nil {
			t.Fatalf("check: %v", err)
		}
		if changed, err := r.Point(ctx); err != nil || !changed {
			t.Fatalf("point: changed %v, %v", changed, err)
		}
		s, err := admin.DiscoveryV1().EndpointSlices(ns).Get(ctx, callbackService, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "10.0.9.9" || s.Endpoints[0].TargetRef.Name != "cesd-z" {
			t.Fatalf("endpoints %+v", s.Endpoints)
		}
		if changed, err := r.Point(ctx); err != nil || changed {
			t.Fatalf("pointing again: changed %v, %v", changed, err)
		}
		if after, err := admin.DiscoveryV1().EndpointSlices(ns).Get(ctx, callbackService, metav1.GetOptions{}); err != nil || after.ResourceVersion != s.ResourceVersion {
			t.Errorf("pointing again wrote the slice (%v)", err)
		}
		v6, err := kuberoute.New(kuberoute.Config{Namespace: ns, Service: callbackService, Address: "fd00::9"}, sa.DiscoveryV1(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := v6.Check(ctx); err == nil || !strings.Contains(err.Error(), "addressType IPv4") {
			t.Errorf("an IPv6 pod against the IPv4 slice: %v", err)
		}
	})

	work := t.TempDir()
	kubeconfig := k.kubeconfig(t, work, token)
	bin := fieldtest.BuildCesd(t, work, "fleet")
	sim, clientSecret := startSim(t, work)
	pods := startPodNet(t, admin)
	reps := map[string]*replica{}
	for _, id := range []string{"cesd-a", "cesd-b"} {
		reps[id] = startReplicaOn(t, bin, work, id, kubeconfig, sim, pods)
	}
	generation := func(s *corev1.Secret) int64 {
		n, err := strconv.ParseInt(s.Annotations[kubesecret.AnnotationGeneration], 10, 64)
		if err != nil {
			t.Fatalf("generation annotation: %v", err)
		}
		return n
	}

	secret := func() *corev1.Secret {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	holder := func() string {
		l, err := admin.CoordinationV1().Leases(ns).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	secretIs := func(g cestest.Generation) func() (bool, string) {
		return func() (bool, string) {
			s := secret()
			var m wallet.Manifest
			if err := json.Unmarshal(s.Data["manifest.json"], &m); err != nil {
				return false, "manifest.json: " + err.Error()
			}
			for name, b := range g.Files {
				if m.Files[name].Derived { // sqlnet.ora with DIRECTORY rewritten: compared with the disk below
					continue
				}
				if !bytes.Equal(s.Data[name], b) {
					return false, fmt.Sprintf("%s differs from generation %d (secret generation %s)", name, g.Number, s.Annotations["cesd.io/generation"])
				}
			}
			for schema, pw := range g.Schemas {
				if string(s.Data["schemas."+schema]) != pw {
					return false, "schemas." + schema + " differs"
				}
			}
			return true, ""
		}
	}
	var leaderID string
	oneLeads := func() (bool, string) {
		leaders := 0
		for _, r := range reps {
			if r.exited() {
				continue
			}
			fams, err := fieldtest.Metrics(r.metrics)
			if err != nil {
				return false, err.Error()
			}
			if fieldtest.Sum(fams, "cesd_leader", nil) == 1 {
				leaders++
				leaderID = r.id
			}
		}
		h := holder()
		return leaders == 1 && h == leaderID, fmt.Sprintf("%d replicas say they lead; the Lease names %q", leaders, h)
	}

	fieldtest.Wait(t, time.Minute, "exactly one leader", oneLeads)
	fieldtest.Wait(t, time.Minute, "the Secret holds CES's wallet", secretIs(sim.Current()))
	leader := reps[leaderID]
	s := secret()
	// Secret-only mode: the leader's one staging folder, private, holds
	// exactly what the Secret holds; sqlnet.ora names where apps mount it.
	staged := leader.staging(t)
	if len(staged) != 1 {
		t.Fatalf("leader's staging folders: %q, want one", staged)
	}
	if fi, err := os.Stat(staged[0]); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("staging folder %s: %v, %v; want 0700", staged[0], fi.Mode(), err)
	}
	for key, b := range s.Data {
		disk, err := os.ReadFile(filepath.Join(staged[0], "wallet", strings.Replace(key, "schemas.", "schemas/", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, disk) {
			t.Errorf("%s in the Secret differs from the leader's staging folder", key)
		}
	}
	if !strings.Contains(string(s.Data["sqlnet.ora"]), `DIRECTORY="/wallet"`) {
		t.Errorf("sqlnet.ora does not name sqlnet_dir:\n%s", s.Data["sqlnet.ora"])
	}
	if refs := s.OwnerReferences; len(refs) != 1 || refs[0].UID != owner.UID || refs[0].Kind != "Deployment" ||
		refs[0].Name != "cesd" || refs[0].APIVersion != "apps/v1" || (refs[0].BlockOwnerDeletion != nil && *refs[0].BlockOwnerDeletion) {
		t.Errorf("ownerReferences %+v, want the Deployment cesd (uid %s) without blockOwnerDeletion", refs, owner.UID)
	}
	for _, r := range reps {
		dirs := r.staging(t)
		if len(dirs) != 1 {
			t.Fatalf("%s's staging folders: %q, want one", r.id, dirs)
		}
		st := exec.Command(bin, "status", "--metrics-listen", r.metrics)
		st.Env = cleanEnv()
		raw, err := st.CombinedOutput()
		if want := fmt.Sprintf("wallet in secret %s/%s (staged in %s)", ns, secretName, filepath.Join(dirs[0], "wallet")); err != nil ||
			!strings.Contains(strings.Join(strings.Fields(string(raw)), " "), want) {
			t.Errorf("cesd status on %s lacks %q: %v\n%s", r.id, want, err, raw)
		}
	}
	for _, key := range []string{"manifest.json", "ewallet.pem", "cesd.io/generation"} {
		if _, inData := s.Data[key]; !inData && s.Annotations[key] == "" {
			t.Errorf("the Secret lacks %s", key)
		}
	}
	if s.Annotations["cesd.io/content-sha256"] == "" || s.Annotations["cesd.io/certificate-end-date"] == "" {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if s.Labels["app.kubernetes.io/part-of"] != "oracle-wallet" {
		t.Errorf("labels: %v", s.Labels)
	}
	var follower *replica
	for id, r := range reps {
		if id != leaderID {
			follower = r
		}
	}
	t.Log("the follower is warm: it holds an IAM token of its own and can read the Secret")
	fieldtest.Wait(t, time.Minute, "the follower warm, naming the leader", func() (bool, string) {
		st, err := jsonStatus(follower.metrics)
		if err != nil {
			return false, err.Error()
		}
		// A follower that campaigned before the leader won sees the holder
		// at its next retry (2 to 4.4 s): until then it says none.
		return st.Healthy && st.Standby != nil && st.Standby.Warm && st.Leader != nil && st.Leader.Holder == leaderID,
			fmt.Sprintf("%+v %+v", st.Leader, st.Standby)
	})
	if n := sim.TokensIssued(); n != 2 {
		t.Errorf("the simulator issued %d IAM tokens, want 2: one for the leader, one for the warm follower", n)
	}
	for _, r := range []*replica{leader, follower} {
		fams, err := fieldtest.Metrics(r.metrics)
		if err != nil {
			t.Fatal(err)
		}
		if n := fieldtest.Sum(fams, "cesd_ces_requests_total", map[string]string{"operation": "token", "code": "200"}); n != 1 {
			t.Errorf("%s fetched %v IAM tokens, want 1", r.id, n)
		}
		if fieldtest.Sum(fams, "cesd_iam_token_expiration_timestamp_seconds", nil) < float64(time.Now().Add(50*time.Minute).Unix()) {
			t.Errorf("%s exports no IAM token expiry about an hour ahead", r.id)
		}
		warm := 0.0
		if r == follower {
			warm = 1
		}
		if got := fieldtest.Sum(fams, "cesd_follower_warm", nil); got != warm {
			t.Errorf("%s: cesd_follower_warm = %v, want %v", r.id, got, warm)
		}
	}
	t.Log("cesd status on every replica names the same leader")
	for _, r := range []*replica{leader, follower} {
		role := "leader"
		if r == follower {
			role = "follower"
		}
		status := exec.Command(bin, "status", "--metrics-listen", r.metrics)
		status.Env = cleanEnv()
		raw, err := status.CombinedOutput()
		out := strings.Join(strings.Fields(string(raw)), " ") // the table's padding aside
		if want := fmt.Sprintf("%q (this replica is %q, the %s)", leaderID, r.id, role); err != nil || !strings.Contains(out, want) {
			t.Errorf("cesd status on %s lacks %s: %v\n%s", r.id, want, err, raw)
		}
		if r == follower && (!strings.Contains(out, "standby warm: ready to take over") || !strings.Contains(out, "check secret fleet/oracle-wallet: ok")) {
			t.Errorf("cesd status on the follower does not say it is warm:\n%s", raw)
		}
		if strings.Contains(out, clientSecret) {
			t.Errorf("cesd status on %s shows the client secret", r.id)
		}
		status = exec.Command(bin, "status", "--json", "--metrics-listen", r.metrics)
		status.Env = cleanEnv()
		if raw, err = status.Output(); err != nil {
			t.Errorf("cesd status --json on %s: %v", r.id, err)
		}
		var st daemon.Status
		if err := json.Unmarshal(raw, &st); err != nil || st.Leader == nil || st.Leader.Holder != leaderID || st.Leader.Identity != r.id || st.Leader.Role != role {
			t.Errorf("cesd status --json on %s: %v %q", r.id, err, raw)
		}
	}
	if code := readyz(leader.metrics); code != http.StatusOK {
		t.Errorf("leader /readyz = %d", code)
	}
	t.Log("callbacks route to the leader through its EndpointSlice; the warm follower is ready too")
	fieldtest.Wait(t, time.Minute, "the EndpointSlice names the leader", pods.routesTo(leader))
	fieldtest.Wait(t, time.Minute, "the leader's status says the route points at it", func() (bool, string) {
		st, err := jsonStatus(leader.metrics)
		if err != nil {
			return false, err.Error()
		}
		return st.Route != nil && st.Route.PointsHere && st.Route.Address == leader.podIP && st.Route.EndpointSlice == ns+"/"+callbackService,
			fmt.Sprintf("%+v", st.Route)
	})
	if code := readyz(follower.metrics); code != http.StatusOK {
		t.Errorf("warm follower %s /readyz = %d, want 200 (callback_service routes callbacks, so a drain can evict the leader)", follower.id, code)
	}
	// A stale route to a follower is refused at once, not left in a backlog
	// nobody serves until CES times out.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(follower.host, pods.port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("follower %s accepted a connection on its callback port", follower.id)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("follower %s callback port: %v, want connection refused", follower.id, err)
	}

	t.Log("a rotation's callback reaches the leader through the EndpointSlice, and the Secret")
	sim.Rotate("all")
	fieldtest.Wait(t, time.Minute, "rotation 1 in the Secret", secretIs(sim.Current()))
	if n := pods.hits(leader); n < 1 {
		t.Errorf("the callback Service sent %d callbacks to the leader, want ≥ 1", n)
	}

	t.Log("an external edit is put back at the next refresh")
	rv := secret().ResourceVersion
	edited := secret()
	edited.Data["cwallet.sso"] = []byte("tampered")
	if _, err := admin.CoreV1().Secrets(ns).Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := leader.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	fieldtest.Wait(t, time.Minute, "the edit undone", func() (bool, string) {
		s := secret()
		ok, why := secretIs(sim.Current())()
		return ok && s.ResourceVersion != rv, why
	})

	t.Log("a Secret write the Role refuses: the leader turns unready, and its staged generation is announced once the Secret holds it")
	testRefusedWrite(t, admin, sa, leader, sim, secretIs)

	t.Log("SIGKILL of the leader: the follower takes over, writes nothing for an unchanged wallet, and the next rotation lands numbered above")
	before := secret()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	fieldtest.Wait(t, time.Minute, "a new leader, ready", func() (bool, string) {
		ok, why := oneLeads()
		if ok && leaderID == leader.id {
			return false, "the killed replica still holds the Lease"
		}
		return ok && readyz(reps[leaderID].metrics) == http.StatusOK, why
	})
	if after := secret(); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("an unchanged wallet after takeover wrote the Secret: generation %s -> %s",
			before.Annotations[kubesecret.AnnotationGeneration], after.Annotations[kubesecret.AnnotationGeneration])
	}
	sim.Rotate("all")
	fieldtest.Wait(t, time.Minute, "rotation 2 in the Secret", secretIs(sim.Current()))
	fieldtest.Wait(t, time.Minute, "the EndpointSlice names the new leader", pods.routesTo(reps[leaderID]))
	if g, was := generation(secret()), generation(before); g <= was {
		t.Errorf("generation %d after takeover, was %d: the Secret's number went backwards", g, was)
	}
	fams, err := fieldtest.Metrics(reps[leaderID].metrics)
	if err != nil {
		t.Fatal(err)
	}
	if n := fieldtest.Sum(fams, "cesd_ces_requests_total", map[string]string{"operation": "token"}); n != 1 || sim.TokensIssued() != 2 {
		t.Errorf("the new leader made %v IAM token requests, the simulator issued %d tokens in all: "+
			"want 1 and 2 (its takeover fetch used the token it kept warm)", n, sim.TokensIssued())
	}
	hits := pods.hits(reps[leaderID])
	sim.Rotate("credentials")
	fieldtest.Wait(t, time.Minute, "rotation 3 (by callback to the new leader) in the Secret", secretIs(sim.Current()))
	if pods.hits(reps[leaderID]) <= hits {
		t.Error("rotation 3's callback did not reach the new leader through the EndpointSlice")
	}
	fams, err = fieldtest.Metrics(reps[leaderID].metrics)
	if err != nil {
		t.Fatal(err)
	}
	if n := fieldtest.Sum(fams, "cesd_leader_transitions_total", nil); n < 1 {
		t.Errorf("cesd_leader_transitions_total = %v on the new leader, want ≥ 1", n)
	}

	t.Log("the killed replica restarts: it removes the staging folder it left behind")
	left := leader.staging(t)
	if len(left) != 1 {
		t.Fatalf("a SIGKILLed replica left %q, want its one staging folder", left)
	}
	restarted := startReplicaOn(t, bin, work, leader.id, kubeconfig, sim, pods)
	fieldtest.Wait(t, time.Minute, "the leftover staging folder removed", func() (bool, string) {
		now := restarted.staging(t)
		return len(now) == 1 && now[0] != left[0], fmt.Sprintf("staging folders %q", now)
	})
	if err := restarted.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-restarted.done
	if now := restarted.staging(t); len(now) != 0 {
		t.Errorf("a replica stopped cleanly left %q", now)
	}

	t.Log("a drain evicts the leader: a new replica warms up and is ready; SIGTERM releases the Lease, it takes over and repoints the EndpointSlice")
	third := startReplicaOn(t, bin, work, "cesd-c", kubeconfig, sim, pods)
	reps[third.id] = third
	fieldtest.Wait(t, time.Minute, "cesd-c warm and ready", func() (bool, string) {
		return readyz(third.metrics) == http.StatusOK, "not ready yet"
	})
	drained := reps[leaderID]
	if err := drained.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-drained.done
	if code := drained.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the drained leader exited %d, want 0", code)
	}
	fieldtest.Wait(t, time.Minute, "cesd-c leads", func() (bool, string) {
		ok, why := oneLeads()
		return ok && leaderID == third.id, why
	})
	fieldtest.Wait(t, time.Minute, "the EndpointSlice names cesd-c", pods.routesTo(third))
	hits = pods.hits(third)
	sim.Rotate("all")
	fieldtest.Wait(t, time.Minute, "rotation 4 (by callback to cesd-c) in the Secret", secretIs(sim.Current()))
	if pods.hits(third) <= hits {
		t.Error("rotation 4's callback did not reach cesd-c through the EndpointSlice")
	}
	for _, r := range append([]*replica{restarted, third}, drained, leader) {
		for _, line := range strings.Split(strings.TrimSpace(r.log.String()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("%s logged a line that is not JSON: %s", r.id, line)
			}
		}
		if strings.Contains(r.log.String(), clientSecret) || strings.Contains(r.log.String(), token) {
			t.Errorf("%s logged a secret", r.id)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// jsonStatus is a replica's GET /status.
func jsonStatus(addr string) (*daemon.Status, error) {
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st daemon.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	return &st, nil
}

// startFleetNamespace starts etcd and the apiserver, creates the fleet
// namespace with the shipped rbac.yaml, secret.yaml, lease.yaml and
// endpointslice.yaml, and
// mints a token for the cesd ServiceAccount through the TokenRequest API.
func startFleetNamespace(t testing.TB) (k *kube, admin kubernetes.Interface, token string) {
	t.Helper()
	k = startKube(t)
	admin = k.client(t, k.adminToken)
	ctx := context.Background()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// deployment.yaml too: the Secret's owner (secret_owner). No controller
	// manager runs, so it starts no pods; the tests run cesd themselves.
	for _, f := range []string{"rbac.yaml", "secret.yaml", "lease.yaml", "endpointslice.yaml", "deployment.yaml"} {
		apply(t, admin, f)
	}
	tok, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "cesd",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	return k, admin, tok.Status.Token
}

// startSim starts the CES simulator and writes its CA and the client
// secret into work, where startReplica looks for them.
func startSim(t testing.TB, work string) (*cestest.Server, string) {
	t.Helper()
	clientSecret := fieldtest.RandomHex(t)
	sim := cestest.NewServer(cestest.Options{ClientSecret: clientSecret})
	t.Cleanup(sim.Close)
	writeFile(t, filepath.Join(work, "ca.pem"), sim.CACertPEM())
	writeFile(t, filepath.Join(work, "client_secret"), []byte(clientSecret))
	return sim, clientSecret
}

func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// apply creates the objects of one shipped manifest in ns.
func apply(t testing.TB, c kubernetes.Interface, file string) {
	t.Helper()
	for _, obj := range decode(t, file) {
		if err := createIn(context.Background(), c, ns, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
}

// decode reads the objects of one manifest file.
func decode(t testing.TB, file string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	for _, doc := range strings.Split(string(b), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, obj)
	}
	return out
}

func createIn(ctx context.Context, c kubernetes.Interface, ns string, obj runtime.Object, o metav1.CreateOptions) error {
	var err error
	switch v := obj.(type) {
	case *corev1.ConfigMap:
		_, err = c.CoreV1().ConfigMaps(ns).Create(ctx, v, o)
	case *corev1.Service:
		_, err = c.CoreV1().Services(ns).Create(ctx, v, o)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(ns).Create(ctx, v, o)
	case *networkingv1.NetworkPolicy:
		_, err = c.NetworkingV1().NetworkPolicies(ns).Create(ctx, v, o)
	case *policyv1.PodDisruptionBudget:
		_, err = c.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, v, o)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, v, o)
	case *corev1.Secret:
		_, err = c.CoreV1().Secrets(ns).Create(ctx, v, o)
	case *coordinationv1.Lease:
		_, err = c.CoordinationV1().Leases(ns).Create(ctx, v, o)
	case *discoveryv1.EndpointSlice:
		_, err = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, v, o)
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(ns).Create(ctx, v, o)
	case *rbacv1.RoleBinding:
		for i := range v.Subjects {
			v.Subjects[i].Namespace = ns
		}
		_, err = c.RbacV1().RoleBindings(ns).Create(ctx, v, o)
	default:
		err = fmt.Errorf("no create for %T", obj)
	}
	return err
}

// kube is a running etcd and kube-apiserver.
type kube struct {
	url, caFile, adminToken string
}

func startKube(t testing.TB) *kube {
	t.Helper()
	apiserver := os.Getenv("CESD_KUBE_APISERVER")
	if apiserver == "" {
		fieldtest.Skip(t, "CESD_KUBE_APISERVER is not set: export CESD_KUBE_APISERVER=$(scripts/kube-apiserver.sh) (about 21 minutes to build once, then cached)")
	}
	fieldtest.Need(t, false, "etcd", apiserver)
	dir := t.TempDir()
	etcdClient, etcdPeer := fieldtest.FreeAddr(t), fieldtest.FreeAddr(t)
	start(t, dir, "etcd", "etcd", "--name=cesd", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://"+etcdClient, "--advertise-client-urls=http://"+etcdClient,
		"--listen-peer-urls=http://"+etcdPeer, "--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=cesd=http://"+etcdPeer)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	writeFile(t, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	k := &kube{adminToken: fieldtest.RandomHex(t), caFile: filepath.Join(dir, "certs", "apiserver.crt")}
	writeFile(t, filepath.Join(dir, "tokens.csv"), []byte(k.adminToken+`,admin,admin-uid,"system:masters"`+"\n"))
	addr := fieldtest.FreeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	k.url = "https://" + addr
	start(t, dir, "kube-apiserver", apiserver,
		"--etcd-servers=http://"+etcdClient, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+port, "--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none")
	fieldtest.Wait(t, 2*time.Minute, "kube-apiserver /readyz", func() (bool, string) {
		if _, err := os.Stat(k.caFile); err != nil {
			return false, err.Error()
		}
		c := k.client(t, k.adminToken)
		b, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		return err == nil, fmt.Sprintf("%s %v", b, err)
	})
	return k
}

func (k *kube) client(t testing.TB, token string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: k.url, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.caFile}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (k *kube) kubeconfig(t testing.TB, dir, token string) string {
	t.Helper()
	path := filepath.Join(dir, "kubeconfig")
	writeFile(t, path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: cesd
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: cesd, namespace: %s}
current-context: test
`, k.url, k.caFile, token, ns)))
	return path
}

// start runs a background process for the test's lifetime.
func start(t testing.TB, dir, name, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log (tail):\n%s", name, tail(b, 3000))
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

type replica struct {
	id, tmp, metrics string
	podIP, host      string // with a podNet: its pod IP, and the loopback address it listens on for it
	cmd              *exec.Cmd
	done             chan struct{}
	log              *syncBuffer
}

// staging lists the replica's staging folders in its TMPDIR.
func (r *replica) staging(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(r.tmp, "cesd-staging-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func (r *replica) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func startReplica(t testing.TB, bin, work, id, kubeconfig string, sim *cestest.Server) *replica {
	return startReplicaOn(t, bin, work, id, kubeconfig, sim, nil)
}

// startReplicaOn starts a replica on the pod network pods, with
// callback_service; with pods nil, it listens on a loopback address of its
// own and registers that as callback_url.
func startReplicaOn(t testing.TB, bin, work, id, kubeconfig string, sim *cestest.Server, pods *podNet) *replica {
	t.Helper()
	r := &replica{id: id, tmp: filepath.Join(work, id+"-tmp"), metrics: fieldtest.FreeAddr(t), done: make(chan struct{}), log: &syncBuffer{}}
	if err := os.MkdirAll(r.tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	listen := fieldtest.FreeAddr(t)
	callback := "http://" + listen + "/cesd/notify"
	var network []string
	if pods != nil {
		r.podIP, r.host = pods.add(id)
		listen = net.JoinHostPort(r.host, pods.port)
		callback = pods.service + "/cesd/notify"
		network = []string{"POD_IP=" + r.podIP, "CESD_CALLBACK_SERVICE=" + callbackService}
	}
	// Secret-only mode, as the shipped ConfigMap: an empty wallet_dir (a
	// flag, since an empty CESD_* variable counts as unset).
	r.cmd = exec.Command(bin, "run", "--wallet-dir=")
	r.cmd.Env = append(cleanEnv(),
		"POD_NAME="+id,
		"CESD_BASE_URL="+sim.URL,
		"CESD_TOKEN_URL="+sim.TokenURL,
		"CESD_CLIENT_ID=cestest-client",
		"CESD_CLIENT_SECRET_FILE="+filepath.Join(work, "client_secret"),
		"CESD_CA_FILE="+filepath.Join(work, "ca.pem"),
		"TMPDIR="+r.tmp,
		"CESD_SQLNET_DIR=/wallet",
		"CESD_SECRET_OWNER=cesd",
		"CESD_LISTEN="+listen,
		"CESD_CALLBACK_URL="+callback,
		"CESD_METRICS_LISTEN="+r.metrics,
		"CESD_POLL_INTERVAL=1h",
		"CESD_SECRET_NAME="+secretName,
		"CESD_SECRET_LABELS=app.kubernetes.io/part-of=oracle-wallet",
		"CESD_KUBECONFIG="+kubeconfig,
		"CESD_LEASE_NAME="+leaseName,
	)
	r.cmd.Env = append(r.cmd.Env, network...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		<-r.done
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", id, tail([]byte(r.log.String()), 4000))
		}
	})
	return r
}

// cleanEnv is the test's environment without CESD_* variables, which cesd
// refuses when it does not know them (CESD_KUBE_APISERVER).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CESD_") {
			env = append(env, kv)
		}
	}
	return env
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testConflict runs the sink with the ServiceAccount's rights against a
// Secret that an admin edits right after each of the sink's first reads:
// the real API server rejects the stale update, and the sink retries on a
// fresh read until its whole object lands.
func testConflict(t *testing.T, admin, sa kubernetes.Interface) {
	ctx := context.Background()
	sink, err := kubesecret.New(kubesecret.Config{Namespace: ns, Name: secretName}, racing{sa.CoreV1(), admin, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := kubesecret.Generation{Number: 1, Data: map[string][]byte{"cwallet.sso": []byte("one"), "manifest.json": []byte("{}")}}
	wrote, err := sink.Publish(ctx, g)
	if err != nil || !wrote {
		t.Fatalf("publish: wrote %v, %v", wrote, err)
	}
	s, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Data) != 2 || string(s.Data["cwallet.sso"]) != "one" || s.Annotations[kubesecret.AnnotationHash] != kubesecret.ContentHash(g.Data) {
		t.Fatalf("secret after the conflicts: %v %v", s.Data, s.Annotations)
	}
	if wrote, err := sink.Publish(ctx, g); err != nil || wrote {
		t.Fatalf("unchanged payload: wrote %v, %v", wrote, err)
	}
	after, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != s.ResourceVersion {
		t.Error("an unchanged payload wrote the Secret")
	}
}

// racing is the ServiceAccount's Secrets client, with an admin editing the
// Secret right after each of the first n reads.
type racing struct {
	typedcorev1.SecretsGetter
	admin kubernetes.Interface
	n     int
}

func (r racing) Secrets(namespace string) typedcorev1.SecretInterface {
	return &racingSecrets{SecretInterface: r.SecretsGetter.Secrets(namespace), admin: r.admin.CoreV1().Secrets(namespace), left: r.n}
}

type racingSecrets struct {
	typedcorev1.SecretInterface
	admin typedcorev1.SecretInterface
	left  int
}

func (r *racingSecrets) Get(ctx context.Context, name string, o metav1.GetOptions) (*corev1.Secret, error) {
	s, err := r.SecretInterface.Get(ctx, name, o)
	if err == nil && r.left > 0 {
		r.left--
		e := s.DeepCopy()
		if e.Data == nil {
			e.Data = map[string][]byte{}
		}
		e.Data["edited"] = []byte(fmt.Sprint(r.left))
		if _, err := r.admin.Update(ctx, e, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
	}
	return s, err
}

// testRefusedWrite takes update on the Secret from the Role, has
// CES rotate, and gives them back: while the Secret cannot be written the
// leader's /readyz says 503 and the swap it staged is not announced; once the
// Secret holds the rotation it is ready again, and the swap counted once.
func testRefusedWrite(t *testing.T, admin, sa kubernetes.Interface, leader *replica, sim *cestest.Server, secretIs func(cestest.Generation) func() (bool, string)) {
	t.Helper()
	ctx := context.Background()
	swaps := func() float64 {
		fams, err := fieldtest.Metrics(leader.metrics)
		if err != nil {
			t.Fatal(err)
		}
		return fieldtest.Sum(fams, "cesd_generation_swaps_total", nil)
	}
	// mayUpdate asks the authorizer itself, which sees a Role change a
	// moment after it is stored.
	mayUpdate := func() bool {
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: ns, Verb: "update", Resource: "secrets", Name: secretName}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	secretVerbs := func(verbs ...string) {
		role, err := admin.RbacV1().Roles(ns).Get(ctx, "cesd", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") {
				role.Rules[i].Verbs = verbs
			}
		}
		if _, err := admin.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	was := swaps()
	var shipped []string
	role, err := admin.RbacV1().Roles(ns).Get(ctx, "cesd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "secrets") {
			shipped = r.Verbs
		}
	}
	secretVerbs("get")
	fieldtest.Wait(t, time.Minute, "the Role refusing update", func() (bool, string) { return !mayUpdate(), "update still allowed" })
	sim.Rotate("all")
	fieldtest.Wait(t, time.Minute, "the leader unready while its Secret write is forbidden", func() (bool, string) {
		code := readyz(leader.metrics)
		return code == http.StatusServiceUnavailable, fmt.Sprintf("/readyz %d", code)
	})
	if n := swaps(); n != was {
		t.Errorf("cesd_generation_swaps_total %v -> %v before the Secret holds the generation", was, n)
	}
	if ok, _ := secretIs(sim.Current())(); ok {
		t.Fatal("the rotation reached the Secret without update rights")
	}
	secretVerbs(shipped...)
	// SIGHUP retries at once, past the error backoff; the authorizer may
	// take a moment to see the Role again.
	var hup time.Time
	fieldtest.Wait(t, time.Minute, "the rotation in the Secret once the Role allows it", func() (bool, string) {
		ok, why := secretIs(sim.Current())()
		if !ok && time.Since(hup) > time.Second {
			hup = time.Now()
			if err := leader.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		return ok, why
	})
	fieldtest.Wait(t, time.Minute, "the leader ready again", func() (bool, string) {
		code := readyz(leader.metrics)
		return code == http.StatusOK, fmt.Sprintf("/readyz %d", code)
	})
	if n := swaps(); n != was+1 {
		t.Errorf("cesd_generation_swaps_total %v -> %v: want the staged generation announced once, when the Secret took it", was, n)
	}
}

// podNet plays the pod network and kube-proxy for the callback Service.
// Each replica gets a pod IP, which it puts in the EndpointSlice, and a
// loopback address of its own where it listens, on the port every replica
// uses: the API server refuses loopback addresses in an EndpointSlice, so
// the pod IPs (10.0.1.x) are mapped to 127.0.0.x here, as a pod network
// would route them. The Service forwards each request to the address the
// slice names at that moment, as kube-proxy does.
type podNet struct {
	admin   kubernetes.Interface
	port    string // every replica's callback port, and the slice's
	service string // the callback Service's URL: callback_url points here

	mu    sync.Mutex
	pods  map[string]string // pod name -> pod IP; a restarted pod keeps its IP
	hosts map[string]string // pod IP -> loopback address
	count map[string]int    // callbacks forwarded, by pod IP
}

func startPodNet(t *testing.T, admin kubernetes.Interface) *podNet {
	t.Helper()
	_, port, _ := net.SplitHostPort(fieldtest.FreeAddr(t))
	p := &podNet{admin: admin, port: port, pods: map[string]string{}, hosts: map[string]string{}, count: map[string]int{}}
	// endpointslice.yaml carries the shipped listen port; this test's
	// replicas listen on another, as an operator who changed listen would.
	ctx := context.Background()
	s, err := admin.DiscoveryV1().EndpointSlices(ns).Get(ctx, callbackService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	s.Ports[0].Port = ptr(int32(n))
	if _, err := admin.DiscoveryV1().EndpointSlices(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(p.forward))
	t.Cleanup(srv.Close)
	p.service = srv.URL
	return p
}

// add gives pod its pod IP and loopback address.
func (p *podNet) add(pod string) (podIP, host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ip, ok := p.pods[pod]; ok {
		return ip, p.hosts[ip]
	}
	n := len(p.pods) + 2
	podIP, host = fmt.Sprintf("10.0.1.%d", n), fmt.Sprintf("127.0.0.%d", n)
	p.pods[pod], p.hosts[podIP] = podIP, host
	return podIP, host
}

// endpoint is the ready address and port the slice names now.
func (p *podNet) endpoint() (string, int32, error) {
	s, err := p.admin.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), callbackService, metav1.GetOptions{})
	if err != nil {
		return "", 0, err
	}
	if len(s.Endpoints) != 1 || len(s.Endpoints[0].Addresses) != 1 || len(s.Ports) != 1 || s.Ports[0].Port == nil {
		return "", 0, fmt.Errorf("endpointslice %s: %d endpoints, %d ports", callbackService, len(s.Endpoints), len(s.Ports))
	}
	if c := s.Endpoints[0].Conditions.Ready; c == nil || !*c {
		return "", 0, fmt.Errorf("endpointslice %s: the endpoint is not ready", callbackService)
	}
	return s.Endpoints[0].Addresses[0], *s.Ports[0].Port, nil
}

func (p *podNet) forward(w http.ResponseWriter, r *http.Request) {
	ip, port, err := p.endpoint()
	p.mu.Lock()
	host, ok := p.hosts[ip]
	if ok {
		p.count[ip]++
	}
	p.mu.Unlock()
	if err != nil || !ok {
		http.Error(w, fmt.Sprintf("no endpoint: %v (%q)", err, ip), http.StatusServiceUnavailable)
		return
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(int(port)))})
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway) // a killed leader, until the next one repoints the slice
	}
	proxy.ServeHTTP(w, r)
}

// routesTo: the slice names r's pod IP.
func (p *podNet) routesTo(r *replica) func() (bool, string) {
	return func() (bool, string) {
		ip, _, err := p.endpoint()
		if err != nil {
			return false, err.Error()
		}
		return ip == r.podIP, fmt.Sprintf("the slice names %s, want %s (%s)", ip, r.podIP, r.id)
	}
}

// hits is how many callbacks the Service forwarded to r.
func (p *podNet) hits(r *replica) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[r.podIP]
}
