//go:build fleet

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/leader"
	"github.com/cesd/cesd/daemon/standby"
)

func TestFleetVersionSaysYes(t *testing.T) {
	code, out, _ := runEnviron([]string{"version"}, nil)
	if code != exitOK || !strings.Contains(out, "fleet: yes") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestFleetSecretOnlyConfig: the fleet build accepts an empty wallet_dir
// with secret_name for cesd run, and then needs sqlnet_dir (unless
// rewrite_sqlnet is off), since sqlnet.ora cannot name the private staging
// folder.
func TestFleetSecretOnlyConfig(t *testing.T) {
	run := needs{ces: true, wallet: true, secretOnly: true}
	_, err := secretOnlyConfig(t, "secret_name: oracle-wallet\n", run)
	wantConfigError(t, err, "sqlnet_dir", "apps mount the Secret")
	cfg, err := secretOnlyConfig(t, "secret_name: oracle-wallet\nsqlnet_dir: /wallet\n", run)
	if err != nil || !cfg.SecretOnly() || cfg.SQLNetDir != "/wallet" {
		t.Fatalf("Secret-only config: %+v, %v", cfg, err)
	}
	if cfg, err = secretOnlyConfig(t, "secret_name: oracle-wallet\nrewrite_sqlnet: false\n", run); err != nil || !cfg.SecretOnly() {
		t.Fatalf("Secret-only without rewrite_sqlnet: %v", err)
	}
}

type fakeDeployments struct {
	appsv1client.DeploymentInterface // any other call panics
	err                              error
}

func (f fakeDeployments) Deployments(string) appsv1client.DeploymentInterface { return f }

func (f fakeDeployments) Get(_ context.Context, name string, _ metav1.GetOptions) (*appsv1.Deployment, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-1")}}, nil
}

// TestFleetDeploymentOwner: secret_owner becomes an ownerReference with the
// Deployment's UID and no blockOwnerDeletion; a missing Deployment and a
// forbidden read are config errors saying what to fix.
func TestFleetDeploymentOwner(t *testing.T) {
	o, err := deploymentOwner(fakeDeployments{}, "ns", "cesd", time.Second)
	if err != nil || o.UID != "uid-1" || o.Kind != "Deployment" || o.APIVersion != "apps/v1" || o.Name != "cesd" ||
		o.BlockOwnerDeletion != nil || o.Controller != nil {
		t.Fatalf("owner %+v, %v", o, err)
	}
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	for text, e := range map[string]error{
		`no Deployment "cesd" in namespace "ns"`: apierrors.NewNotFound(gr, "cesd"),
		"the Role needs get on deployments":      apierrors.NewForbidden(gr, "cesd", errors.New("denied")),
	} {
		_, err := deploymentOwner(fakeDeployments{err: e}, "ns", "cesd", time.Second)
		wantConfigError(t, err, "secret_owner", text)
	}
	if _, err := deploymentOwner(fakeDeployments{err: errors.New("connection refused")}, "ns", "cesd", time.Second); err == nil ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("transport error: %v", err)
	}
}

// TestFleetShippedConfigMapIsSecretOnly: the fleet build accepts the
// cesd.yaml of deploy/kubernetes/fleet/configmap.yaml, and it runs
// Secret-only mode with the Secret owned by the cesd Deployment and
// sqlnet.ora naming app.yaml's mount path.
func TestFleetShippedConfigMapIsSecretOnly(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/fleet/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["cesd.yaml"] == "" {
		t.Fatalf("configmap.yaml holds no cesd.yaml: %v", err)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "cesd.yaml", cm.Data["cesd.yaml"])
	secret := writeFile(t, dir, "client_secret", "s")
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("run", "")
	cfg, _, err := loadConfig(fs, []string{"--config", path, "--client-secret-file", secret}, envMap(nil),
		needs{ces: true, wallet: true, secretOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SecretOnly() || cfg.SQLNetDir != "/wallet" || cfg.SecretOwner != "cesd" || cfg.SecretName != "oracle-wallet" || cfg.LeaseName != "cesd" {
		t.Fatalf("shipped fleet config: Secret-only %v, sqlnet_dir %q, secret_owner %q, secret_name %q, lease_name %q",
			cfg.SecretOnly(), cfg.SQLNetDir, cfg.SecretOwner, cfg.SecretName, cfg.LeaseName)
	}
	app, err := os.ReadFile("../../deploy/kubernetes/fleet/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(app), "mountPath: "+cfg.SQLNetDir+"\n") {
		t.Errorf("app.yaml does not mount the Secret at sqlnet_dir %s", cfg.SQLNetDir)
	}
}

// TestFleetShippedCallbackRoute: the shipped manifests agree on the callback
// route: the ConfigMap's callback_service names a Service without a selector
// and the EndpointSlice of the same name, labelled for it and managed by
// cesd, whose port is the ConfigMap's listen port; the Role grants exactly
// get and update on that one slice; the Deployment gives cesd its
// POD_IP and NODE_NAME.
func TestFleetShippedCallbackRoute(t *testing.T) {
	docs := func(file string) []map[string]any {
		raw, err := os.ReadFile("../../deploy/kubernetes/fleet/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, d := range strings.Split(string(raw), "\n---\n") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			out = append(out, m)
		}
		return out
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	raw, err := os.ReadFile("../../deploy/kubernetes/fleet/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Listen          string `yaml:"listen"`
		CallbackService string `yaml:"callback_service"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["cesd.yaml"]), &conf); err != nil || conf.CallbackService == "" {
		t.Fatalf("the shipped ConfigMap sets no callback_service: %v", err)
	}
	_, listenPort, _ := strings.Cut(conf.Listen, ":")

	svc := docs("service.yaml")[0]
	spec := svc["spec"].(map[string]any)
	if svc["metadata"].(map[string]any)["name"] != conf.CallbackService || spec["selector"] != nil {
		t.Errorf("service.yaml: want the Service %s without a selector, got %v", conf.CallbackService, svc["metadata"])
	}
	slice := docs("endpointslice.yaml")[0]
	meta := slice["metadata"].(map[string]any)
	labels := meta["labels"].(map[string]any)
	port := slice["ports"].([]any)[0].(map[string]any)
	if meta["name"] != conf.CallbackService || labels["kubernetes.io/service-name"] != conf.CallbackService ||
		labels["endpointslice.kubernetes.io/managed-by"] != "cesd.io" || fmt.Sprint(port["port"]) != listenPort ||
		port["name"] != spec["ports"].([]any)[0].(map[string]any)["name"] {
		t.Errorf("endpointslice.yaml does not fit the Service %s on listen port %s: %v %v", conf.CallbackService, listenPort, meta, port)
	}
	var granted []string
	for _, r := range docs("rbac.yaml")[1]["rules"].([]any) {
		rule := r.(map[string]any)
		if fmt.Sprint(rule["resources"]) == "[endpointslices]" {
			granted = append(granted, fmt.Sprint(rule["resourceNames"], rule["verbs"]))
		}
	}
	if want := fmt.Sprintf("[%s] [get update]", conf.CallbackService); len(granted) != 1 || granted[0] != want {
		t.Errorf("rbac.yaml grants on endpointslices %q, want exactly %q", granted, want)
	}
	deployment, err := os.ReadFile("../../deploy/kubernetes/fleet/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"name: POD_IP\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP",
		"name: NODE_NAME\n              valueFrom:\n                fieldRef:\n                  fieldPath: spec.nodeName"} {
		if !strings.Contains(string(deployment), env) {
			t.Errorf("deployment.yaml lacks %q", env)
		}
	}
}

type fakeLeaseInfo struct{}

func (fakeLeaseInfo) Holder() string   { return "a" }
func (fakeLeaseInfo) Identity() string { return "a" }

// TestFleetOnlyMetricsRegistered: the metrics the alert rules may use from
// the fleet build are the ones its parts register.
func TestFleetOnlyMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := &recorder{Registerer: reg, names: map[string]bool{}}
	if _, err := leader.New(leader.Config{Namespace: "ns", LeaseName: "cesd", Identity: "a"}, nil, rec, nil); err != nil {
		t.Fatal(err)
	}
	client, err := ces.New(ces.Config{BaseURL: "https://ces.example.com/x", TokenURL: "https://iam.example.com/t", ClientID: "id", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standby.New(standby.Config{}, standby.Deps{Token: client, Lease: fakeLeaseInfo{}, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	for _, m := range fleetOnlyMetrics {
		if !rec.names[m] {
			t.Errorf("%s is not registered by the fleet build", m)
		}
	}
}
