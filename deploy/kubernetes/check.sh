#!/usr/bin/env bash
# Lints the manifests (yamllint, repo .yamllint) and checks that cesd accepts
# the cesd.yaml inside configmap.yaml (exit 2 would be a config error). The
# structural security checks are in manifests_test.go (go test).
set -euo pipefail
cd "$(dirname "$0")/../.."
yamllint --strict deploy/kubernetes deploy/systemd/cesd.yaml.example

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$work/cesd" ./cmd/cesd
sed -n '/^  cesd.yaml: |$/,/^[^ ]/{/^    /s/^    //p;/^$/p}' deploy/kubernetes/configmap.yaml >"$work/cesd.yaml"
grep -q '^wallet_dir: /wallet/oracle$' "$work/cesd.yaml" || { echo "check: could not extract cesd.yaml from configmap.yaml" >&2; exit 1; }
mkdir "$work/wallet"
rc=0
"$work/cesd" inspect --config "$work/cesd.yaml" --wallet-dir "$work/wallet" >/dev/null 2>"$work/err" || rc=$?
if [ "$rc" -eq 2 ]; then cat "$work/err" >&2; echo "check: cesd rejects the ConfigMap's cesd.yaml" >&2; exit 1; fi
echo "kubernetes manifests: yamllint ok, ConfigMap cesd.yaml accepted"
