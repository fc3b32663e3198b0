// Package kubernetes_test checks the security settings of the Kubernetes
// manifests in this folder by decoding them into minimal local structs
// (no client libraries): what the docs promise is what the YAML says.
package kubernetes_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type object struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   metadata          `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
}

type metadata struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type deployment struct {
	Replicas int `yaml:"replicas"`
	Template struct {
		Metadata metadata `yaml:"metadata"`
		Spec     podSpec  `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	SecurityContext *securityContext `yaml:"securityContext"`
	InitContainers  []container      `yaml:"initContainers"`
	Containers      []container      `yaml:"containers"`
	Volumes         []volume         `yaml:"volumes"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	Args            []string         `yaml:"args"`
	RestartPolicy   string           `yaml:"restartPolicy"`
	Env             []envVar         `yaml:"env"`
	EnvFrom         []yaml.Node      `yaml:"envFrom"`
	Ports           []port           `yaml:"ports"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
}

type envVar struct {
	Name      string     `yaml:"name"`
	Value     string     `yaml:"value"`
	ValueFrom *yaml.Node `yaml:"valueFrom"`
}

type port struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type probe struct {
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	FSGroup                  *int  `yaml:"fsGroup"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile *struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type volume struct {
	Name     string `yaml:"name"`
	EmptyDir *struct {
		Medium string `yaml:"medium"`
	} `yaml:"emptyDir"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

type networkPolicy struct {
	PodSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"podSelector"`
	PolicyTypes []string `yaml:"policyTypes"`
	Ingress     []struct {
		From []struct {
			IPBlock *struct {
				CIDR string `yaml:"cidr"`
			} `yaml:"ipBlock"`
			NamespaceSelector *yaml.Node `yaml:"namespaceSelector"`
			PodSelector       *yaml.Node `yaml:"podSelector"`
		} `yaml:"from"`
		Ports []struct {
			Protocol string `yaml:"protocol"`
			Port     int    `yaml:"port"`
		} `yaml:"ports"`
	} `yaml:"ingress"`
}

type service struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"`
	} `yaml:"ports"`
}

// load decodes every YAML document of every manifest in this folder.
func load(t *testing.T) map[string][]object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found: %v", err)
	}
	out := map[string][]object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			out[f] = append(out[f], o)
		}
	}
	return out
}

func find(t *testing.T, all map[string][]object, file, kind string) object {
	t.Helper()
	for _, o := range all[file] {
		if o.Kind == kind {
			return o
		}
	}
	t.Fatalf("%s: no %s", file, kind)
	return object{}
}

func decodeSpec[T any](t *testing.T, o object) T {
	t.Helper()
	var v T
	if err := o.Spec.Decode(&v); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return v
}

func TestEveryContainerIsLockedDown(t *testing.T) {
	all := load(t)
	n := 0
	for file, objs := range all {
		for _, o := range objs {
			if o.Kind != "Deployment" {
				continue
			}
			d := decodeSpec[deployment](t, o)
			pod := d.Template.Spec
			if sc := pod.SecurityContext; sc == nil || !isTrue(sc.RunAsNonRoot) || sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
				t.Errorf("%s: pod securityContext needs runAsNonRoot and seccomp RuntimeDefault", file)
			}
			for _, c := range pod.InitContainers {
				n++
				checkContainer(t, file+"/"+c.Name, c, 65532)
			}
			for _, c := range pod.Containers {
				n++
				checkContainer(t, file+"/"+c.Name, c, -1)
			}
		}
	}
	if n < 4 {
		t.Fatalf("checked %d containers, want at least 4 (two Deployments)", n)
	}
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// checkContainer: uid is the UID the container must run as, or -1 for any
// UID but root.
func checkContainer(t *testing.T, where string, c container, uid int) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	if !isTrue(sc.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot must be true", where)
	}
	switch {
	case sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("%s: runAsUser must be set, and not 0", where)
	case uid >= 0 && *sc.RunAsUser != uid:
		t.Errorf("%s: runAsUser must be %d (the image's nonroot user, and the wallet owner)", where, uid)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem must be true", where)
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop [ALL] and add none", where)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
	}
	// The client secret is a file: no env var may carry it.
	for _, e := range c.Env {
		if e.ValueFrom != nil || strings.Contains(strings.ToUpper(e.Name), "SECRET") {
			t.Errorf("%s: env %s: secrets come from a mounted file, never env", where, e.Name)
		}
	}
	if len(c.EnvFrom) > 0 {
		t.Errorf("%s: envFrom would put a Secret or ConfigMap into env", where)
	}
}

func TestSidecarIsNative(t *testing.T) {
	all := load(t)
	d := decodeSpec[deployment](t, find(t, all, "deployment.yaml", "Deployment"))
	pod := d.Template.Spec
	var cesd *container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == "cesd" {
			cesd = &pod.InitContainers[i]
		}
	}
	if cesd == nil {
		t.Fatal("cesd must be an initContainer")
	}
	for _, c := range pod.Containers {
		if strings.Contains(c.Image, "cesd") {
			t.Errorf("container %s runs cesd as a regular container; it must be a native sidecar", c.Name)
		}
	}
	if cesd.RestartPolicy != "Always" {
		t.Errorf("cesd restartPolicy = %q, want Always (native sidecar)", cesd.RestartPolicy)
	}
	if !slices.Equal(cesd.Args, []string{"run"}) {
		t.Errorf("cesd args = %q, want [run]", cesd.Args)
	}
	if !readyProbe(cesd.StartupProbe) {
		t.Error("cesd needs a startupProbe on readiness (cesd healthcheck or GET /readyz), so the app starts with a wallet")
	}
	if !readyProbe(cesd.ReadinessProbe) {
		t.Error("cesd needs a readinessProbe on readiness (cesd healthcheck or GET /readyz)")
	}
	checkWalletAndSecret(t, pod, cesd, "deployment.yaml")
	checkConfig(t, all, pod, cesd)
}

func readyProbe(p *probe) bool {
	switch {
	case p == nil:
		return false
	case p.Exec != nil:
		return slices.Equal(p.Exec.Command, []string{"cesd", "healthcheck"})
	case p.HTTPGet != nil:
		return p.HTTPGet.Path == "/readyz" && p.HTTPGet.Port == "metrics"
	}
	return false
}

func TestFetchInitVariant(t *testing.T) {
	all := load(t)
	d := decodeSpec[deployment](t, find(t, all, "fetch-init.yaml", "Deployment"))
	pod := d.Template.Spec
	if len(pod.InitContainers) != 1 {
		t.Fatalf("fetch-init.yaml: want one init container, got %d", len(pod.InitContainers))
	}
	c := pod.InitContainers[0]
	if c.RestartPolicy != "" {
		t.Errorf("fetch init container has restartPolicy %q: it must run to completion", c.RestartPolicy)
	}
	if !slices.Equal(c.Args, []string{"fetch"}) {
		t.Errorf("fetch init container args = %q, want [fetch]", c.Args)
	}
	checkWalletAndSecret(t, pod, &c, "fetch-init.yaml")
}

// checkWalletAndSecret: the wallet is an in-memory emptyDir shared with the
// app (read-only there, with TNS_ADMIN pointing at it); the client secret is
// a Secret volume mounted only into cesd.
func checkWalletAndSecret(t *testing.T, pod podSpec, cesd *container, file string) {
	t.Helper()
	walletDir, _ := configValue(t, "wallet_dir").(string)
	vols := map[string]volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	w, ok := vols["wallet"]
	if !ok || w.EmptyDir == nil || w.EmptyDir.Medium != "Memory" {
		t.Errorf("%s: volume wallet must be an emptyDir with medium Memory", file)
	}
	s, ok := vols["cesd-client"]
	if !ok || s.Secret == nil || s.Secret.SecretName == "" {
		t.Fatalf("%s: volume cesd-client must be a Secret", file)
	}
	if m := mount(cesd, "wallet"); m == nil || m.MountPath != "/wallet" || m.ReadOnly {
		t.Errorf("%s: cesd must mount wallet read-write at /wallet", file)
	}
	if m := mount(cesd, "cesd-client"); m == nil || !m.ReadOnly {
		t.Errorf("%s: cesd must mount the secret read-only", file)
	}
	for _, c := range pod.Containers {
		if m := mount(&c, "wallet"); m == nil || m.MountPath != "/wallet" || !m.ReadOnly {
			t.Errorf("%s: %s must mount wallet read-only at /wallet", file, c.Name)
		}
		if !slices.Contains(c.Env, envVar{Name: "TNS_ADMIN", Value: walletDir}) {
			t.Errorf("%s: %s needs TNS_ADMIN=%s (wallet_dir)", file, c.Name, walletDir)
		}
		if mount(&c, "cesd-client") != nil {
			t.Errorf("%s: %s must not see the client secret", file, c.Name)
		}
	}
}

func mount(c *container, name string) *volumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// checkConfig ties cesd.yaml in the ConfigMap to the pod: wallet_dir is the
// shared volume, the secret file is under the Secret mount, the ports match.
func checkConfig(t *testing.T, all map[string][]object, pod podSpec, cesd *container) {
	t.Helper()
	cm := find(t, all, "configmap.yaml", "ConfigMap")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["cesd.yaml"]), &cfg); err != nil {
		t.Fatalf("configmap cesd.yaml: %v", err)
	}
	secretDir := mount(cesd, "cesd-client").MountPath
	for key, want := range map[string]any{
		"client_secret_file": secretDir + "/client_secret",
		"listen":             ":" + strconv.Itoa(containerPort(t, cesd, "callback")),
		"metrics_listen":     "0.0.0.0:" + strconv.Itoa(containerPort(t, cesd, "metrics")),
		"unregister_on_exit": false,
	} {
		if cfg[key] != want {
			t.Errorf("configmap cesd.yaml %s = %v, want %v", key, cfg[key], want)
		}
	}
	if _, ok := cfg["client_secret"]; ok {
		t.Error("configmap cesd.yaml must not hold the secret")
	}
	if c := mount(cesd, "cesd-config"); c == nil || !strings.HasPrefix(secretDir, c.MountPath) {
		t.Error("cesd must mount cesd-config, with the secret under it at /etc/cesd/secret")
	}
}

func containerPort(t *testing.T, c *container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("%s: no port named %s", c.Name, name)
	return 0
}

func TestNetworkPolicyLimitsCallbackPort(t *testing.T) {
	all := load(t)
	d := decodeSpec[deployment](t, find(t, all, "deployment.yaml", "Deployment"))
	var cesd *container
	for i := range d.Template.Spec.InitContainers {
		cesd = &d.Template.Spec.InitContainers[i]
	}
	callback := containerPort(t, cesd, "callback")
	metrics := containerPort(t, cesd, "metrics")

	np := decodeSpec[networkPolicy](t, find(t, all, "networkpolicy.yaml", "NetworkPolicy"))
	if !slices.Contains(np.PolicyTypes, "Ingress") {
		t.Error("NetworkPolicy must restrict Ingress")
	}
	for k, v := range np.PodSelector.MatchLabels {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("NetworkPolicy podSelector %s=%s does not select the Deployment's pods", k, v)
		}
	}
	if len(np.PodSelector.MatchLabels) == 0 {
		t.Error("NetworkPolicy must select the app's pods, not every pod")
	}
	sawCallback, sawMetrics := false, false
	for i, rule := range np.Ingress {
		ports := map[int]bool{}
		for _, p := range rule.Ports {
			ports[p.Port] = true
		}
		// A rule without ports opens every port, the callback port included.
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d has no ports: it opens the callback port", i)
		}
		if ports[callback] {
			sawCallback = true
			if len(rule.Ports) != 1 || len(rule.From) == 0 {
				t.Errorf("ingress rule %d: the callback port needs a rule of its own with a from: list", i)
			}
			for _, f := range rule.From {
				if f.IPBlock == nil || f.IPBlock.CIDR == "" || f.IPBlock.CIDR == "0.0.0.0/0" || f.NamespaceSelector != nil || f.PodSelector != nil {
					t.Errorf("ingress rule %d: the callback port may be reached only from the CES endpoint's ipBlock", i)
				}
			}
		}
		if ports[metrics] {
			sawMetrics = true
			if len(rule.From) == 0 {
				t.Errorf("ingress rule %d: the metrics port is open to everyone", i)
			}
		}
	}
	if !sawCallback {
		t.Error("NetworkPolicy does not admit the callback port at all")
	}
	if !sawMetrics {
		t.Error("NetworkPolicy does not admit the metrics port from monitoring")
	}

	svc := decodeSpec[service](t, find(t, all, "service.yaml", "Service"))
	if len(svc.Ports) != 1 || svc.Ports[0].TargetPort != "callback" {
		t.Errorf("Service must expose only the callback port (targetPort callback), got %+v", svc.Ports)
	}
	for k, v := range svc.Selector {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the Deployment's pods", k, v)
		}
	}
}

// configValue reads one key of cesd.yaml in configmap.yaml.
func configValue(t *testing.T, key string) any {
	t.Helper()
	cm := find(t, load(t), "configmap.yaml", "ConfigMap")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["cesd.yaml"]), &cfg); err != nil {
		t.Fatalf("configmap cesd.yaml: %v", err)
	}
	return cfg[key]
}

// TestAppReadsThroughGroup: the app runs under a UID of its own and reads
// the wallet as a member of the pod's fsGroup, which cesd gives the wallet
// to with file_mode 0640. wallet_dir is a folder inside the emptyDir, since
// the mount itself belongs to root (2777) and cesd could not give it 0750.
func TestAppReadsThroughGroup(t *testing.T) {
	all := load(t)
	group, mode := configValue(t, "group"), configValue(t, "file_mode")
	walletDir, _ := configValue(t, "wallet_dir").(string)
	if mode != "0640" {
		t.Errorf("configmap cesd.yaml: file_mode = %v, want \"0640\"", mode)
	}
	for _, file := range []string{"deployment.yaml", "fetch-init.yaml"} {
		pod := decodeSpec[deployment](t, find(t, all, file, "Deployment")).Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil {
			t.Errorf("%s: the pod needs an fsGroup", file)
			continue
		}
		if fs := strconv.Itoa(*pod.SecurityContext.FSGroup); group != fs {
			t.Errorf("%s: cesd.yaml group = %v, want the pod's fsGroup %s", file, group, fs)
		}
		cesd := pod.InitContainers[0]
		m := mount(&cesd, "wallet")
		if m == nil || !strings.HasPrefix(walletDir, m.MountPath+"/") {
			t.Errorf("%s: wallet_dir %s must be a folder inside the wallet volume, not the mount itself", file, walletDir)
		}
		for _, c := range pod.Containers {
			if *c.SecurityContext.RunAsUser == *cesd.SecurityContext.RunAsUser {
				t.Errorf("%s: %s runs as cesd's UID: the example is an app under a UID of its own", file, c.Name)
			}
		}
	}
}
