#!/usr/bin/env bash
# Prints the path of a ready kube-apiserver binary, building it on first use.
#
# The fleet-mode tests need a real API server, and none can be downloaded here:
# it is built from the Go module proxy, using k8s.io/kubernetes as a library.
# A cold build takes about 21 minutes on 2 cores, so the binary is cached by
# version outside the repository and rebuilt only when missing.
#
#   KUBE_VERSION     default v1.37.2
#   CESD_KUBE_CACHE  default /var/cache/cesd/kube
set -euo pipefail

version=${KUBE_VERSION:-v1.37.2}
cache=${CESD_KUBE_CACHE:-/var/cache/cesd/kube}
out="$cache/$version/kube-apiserver"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache/$version"
exec 9>"$cache/$version/.lock"
flock 9
if [ -x "$out" ]; then # another run built it while we waited
  echo "$out"
  exit 0
fi

minor=${version#v1.}; minor=${minor%%.*}
staging="v0.${version#v1.}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

cat >main.go <<'GO'
// Command kube-apiserver is k8s.io/kubernetes' API server, built as a library
// for cesd's fleet-mode tests.
package main

import (
	"os"

	_ "time/tzdata"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO

{
  echo "module cesd.test/kube-apiserver"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
  echo
  echo "require k8s.io/kubernetes $version"
} >go.mod

# kubernetes requires its staging modules at v0.0.0; map each to its release.
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" |
  sort -u |
  grep -v -e sample-cli-plugin -e sample-controller |
  while read -r m; do go mod edit -replace "$m=$m@$staging"; done

echo "building kube-apiserver $version (about 20 minutes cold)..." >&2
go mod tidy >&2
go build -trimpath -o "$out.tmp" -ldflags="-s -w \
  -X k8s.io/component-base/version.gitVersion=$version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$minor" .
mv "$out.tmp" "$out"
echo "$out"
