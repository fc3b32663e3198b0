#!/usr/bin/env bash
# Checks the container image recipe. With a Docker engine it builds the image
# and runs `cesd version` in it. Without one (the usual CI case) it checks
# what it can on the host:
#   1. the Dockerfile's own build command, run as written;
#   2. the binary is static (ldd: "not a dynamic executable");
#   3. the binary runs as UID/GID 65532 inside a read-only copy of the image
#      layout (a chroot with no shell), and `cesd demo` writes a live wallet
#      to a tmpfs volume there. Step 3 needs root (unshare, chroot); it is
#      skipped with a notice otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version="check-$$"

# 1. Run the build lines between the markers, minus the RUN --mount prefix.
cmd=$(sed -n '/^# build-command-begin/,/^# build-command-end/p' Dockerfile \
  | sed -e '/^#/d' -e 's/^RUN\( --mount=[^ ]*\)*//' -e 's/\\$//' | tr '\n' ' ')
case "$cmd" in
  *"CGO_ENABLED=0"*"-trimpath"*"-X main.version=\$VERSION"*"-X main.commit=\$COMMIT"*"-o /out/cesd ./cmd/cesd"*) ;;
  *) echo "check: unexpected build command in Dockerfile: $cmd" >&2; exit 1 ;;
esac
cmd=${cmd//\/out\/cesd/$work\/cesd}
echo "build: $cmd"
TAGS= VERSION=$version COMMIT=0000000 TARGETOS=linux TARGETARCH=$(go env GOARCH) bash -c "set -e; $cmd"
"$work/cesd" version | grep -q "$version (commit 0000000," || { echo "check: version and commit ldflags not applied" >&2; exit 1; }
echo "ldflags: ok"

# 2. Static.
ldd_out=$(ldd "$work/cesd" 2>&1 || true)
case "$ldd_out" in
  *"not a dynamic executable"*) echo "static: ok" ;;
  *) echo "$ldd_out" >&2; echo "check: cesd is dynamically linked" >&2; exit 1 ;;
esac

# 3. Non-root on a read-only root. The layout mirrors distroless static:
# /etc/passwd with nonroot 65532, CA certificates, no /bin/sh.
if docker info >/dev/null 2>&1; then
  docker build --build-arg VERSION="$version" --build-arg COMMIT=0000000 -t cesd:check .
  docker run --rm --read-only --user 65532:65532 cesd:check version | grep -q "$version (commit 0000000,"
  test "$(docker image inspect -f '{{.Config.User}}' cesd:check)" = "65532:65532"
  echo "docker image: ok"
fi
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
  echo "check: not root, skipping the UID 65532 read-only-root run" >&2
  exit 0
fi
root=$work/root
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/wallet" "$root/proc" "$root/dev"
cp "$work/cesd" "$root/usr/local/bin/cesd"
echo 'root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
echo 'root:x:0:
nonroot:x:65532:' >"$root/etc/group"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"

unshare --mount --propagation private bash -euo pipefail -s "$root" <<'INNER'
root=$1
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o size=16m,mode=0700,uid=65532,gid=65532 wallet "$root/wallet"
as65532() { chroot --userspec=65532:65532 --groups=65532 "$root" /usr/local/bin/cesd "$@"; }

if chroot --userspec=65532:65532 --groups=65532 "$root" /bin/sh -c true 2>/dev/null; then
  echo "check: the image layout has a shell" >&2; exit 1
fi
if touch "$root/probe" 2>/dev/null; then echo "check: root is not read-only" >&2; exit 1; fi
as65532 version >/dev/null
as65532 fetch --help >/dev/null 2>&1
echo "uid 65532, read-only root: cesd version and fetch --help ok"

# The demo runs the real daemon against a loopback CES simulator: wait for
# a live generation on the tmpfs volume, then stop it with SIGTERM (a
# background job of a script ignores SIGINT). timeout bounds a hung demo.
timeout -s KILL 60 chroot --userspec=65532:65532 --groups=65532 "$root" \
  /usr/local/bin/cesd demo --dir /wallet/demo >"$root/wallet/demo.log" 2>&1 </dev/null &
pid=$!
live=""
for _ in $(seq 1 300); do
  if [ -L "$root/wallet/demo/wallet/..data" ] && [ -e "$root/wallet/demo/wallet/manifest.json" ]; then live=yes; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "$pid" 2>/dev/null || true  # timeout forwards it to cesd
rc=0; wait "$pid" || rc=$?
if [ -z "$live" ]; then
  tail -n 20 "$root/wallet/demo.log" >&2; echo "check: no live wallet from cesd demo as 65532 on a read-only root" >&2; exit 1
fi
owner=$(stat -c %u "$root/wallet/demo/wallet/..data/manifest.json")
[ "$owner" = 65532 ] || { echo "check: wallet owned by $owner, want 65532" >&2; exit 1; }
echo "uid 65532, read-only root: cesd demo wrote a live wallet to the volume (exit $rc after SIGTERM)"
INNER
