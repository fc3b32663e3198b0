//go:build !fleet

package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestFleetDefaultBuildLinksNoClientGo: client-go costs every sidecar and
// VM user ~20 MB of binary, ~13 MiB of idle RSS and ~27 ms of init, for a
// feature only the fleet Deployment uses; the default build must not link it.
func TestFleetDefaultBuildLinksNoClientGo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !strings.Contains(string(out), "github.com/cesd/cesd/daemon\n") {
		t.Fatalf("go list -deps lists no github.com/cesd/cesd/daemon: %q", deps)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasSuffix(p, "/wallet/kubesecret") || strings.HasSuffix(p, "/daemon/leader") {
			t.Errorf("the default build links %s: keep it behind the build tag fleet", p)
		}
	}
}

// TestFleetKeysNeedTheFleetBuild: a fleet key in a binary without fleet
// mode is a config error naming the key and the build that has it.
func TestFleetKeysNeedTheFleetBuild(t *testing.T) {
	for key, cfg := range map[string]*Config{
		"secret_name":      {SecretName: "wallet", LeaseName: "cesd"},
		"lease_name":       {LeaseName: "cesd"},
		"callback_service": {CallbackService: "cesd-callback"},
	} {
		_, err := newFleet(cfg, pod{Name: "pod-0"}, nil, nil, nil)
		var ce *configError
		if !errors.As(err, &ce) || ce.Key != key || !strings.Contains(err.Error(), "-tags fleet") {
			t.Errorf("%s: err = %v, want a config error on %s naming -tags fleet", key, err, key)
		}
	}
	if f, err := newFleet(&Config{}, pod{}, nil, nil, nil); err != nil || f.writer != nil || f.run != nil || f.lease != nil {
		t.Fatalf("outside fleet mode: %+v, %v", f, err)
	}
}

func TestFleetVersionSaysNo(t *testing.T) {
	code, out, _ := runEnviron([]string{"version"}, nil)
	if code != exitOK || !strings.Contains(out, "fleet: no") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestFleetSecretOnlyNeedsTheFleetBuild: the default build keeps requiring
// wallet_dir, Secret-only configuration or not.
func TestFleetSecretOnlyNeedsTheFleetBuild(t *testing.T) {
	_, err := secretOnlyConfig(t, "secret_name: oracle-wallet\nsqlnet_dir: /wallet\n", needs{ces: true, wallet: true, secretOnly: true})
	wantConfigError(t, err, "wallet_dir", "required")
}
