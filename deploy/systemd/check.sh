#!/usr/bin/env bash
# Checks the systemd files: systemd-analyze verify (clean, no warnings) on
# every unit, the offline security exposure of cesd.service (must be <= 2.0),
# the sysusers lines, and that cesd accepts cesd.yaml.example.
# Usage: deploy/systemd/check.sh   (needs go and systemd-analyze; no running
# systemd is required).
set -euo pipefail
cd "$(dirname "$0")/../.."
max_score=2.0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

CGO_ENABLED=0 go build -trimpath -o "$work/cesd" ./cmd/cesd

# verify refuses an ExecStart binary that does not exist, and --root does not
# apply to verify in systemd 252; so verify copies whose ExecStart points at
# the binary just built. Everything else in the units is checked as shipped.
mkdir "$work/units"
sed "s#^ExecStart=/usr/local/bin/cesd #ExecStart=$work/cesd #" deploy/systemd/cesd.service >"$work/units/cesd.service"
grep -q "^ExecStart=$work/cesd run " "$work/units/cesd.service" || { echo "check: ExecStart= in cesd.service changed; update check.sh" >&2; exit 1; }
cp deploy/systemd/cesd-wallet.path deploy/systemd/cesd-wallet.service "$work/units/"
mkdir "$work/units/cesd.service.d"
cp deploy/systemd/on-change-reload.conf deploy/systemd/readers.conf "$work/units/cesd.service.d/"
# A stand-in for the app, with the reader drop-in as shipped.
printf '[Service]\nExecStart=/bin/true\n' >"$work/units/my-app.service"
mkdir "$work/units/my-app.service.d"
cp deploy/systemd/my-app-wallet.conf "$work/units/my-app.service.d/cesd-wallet.conf"

# verify exits 0 on unknown keys and other warnings, so any output fails.
# SYSTEMD_UNIT_PATH makes it read the drop-in too (the trailing ':' keeps
# the default search path for targets such as network-online.target).
for u in cesd.service cesd-wallet.path cesd-wallet.service my-app.service; do
  out=$(cd "$work/units" && SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze verify "./$u" 2>&1) || { echo "$out" >&2; echo "check: systemd-analyze verify $u failed" >&2; exit 1; }
  if [ -n "$out" ]; then echo "$out" >&2; echo "check: systemd-analyze verify $u warned" >&2; exit 1; fi
  echo "verify $u: ok"
done

report=$(systemd-analyze security --offline=yes deploy/systemd/cesd.service 2>&1) || true
score=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for cesd.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then printf '%s\n' "$report" >&2; echo "check: no exposure score found" >&2; exit 1; fi
echo "security exposure of cesd.service: $score (max $max_score)"
if awk -v s="$score" -v m="$max_score" 'BEGIN { exit !(s > m) }'; then
  printf '%s\n' "$report" | grep '✗' >&2 || true
  echo "check: exposure $score is over $max_score" >&2
  exit 1
fi

mkdir -p "$work/root/etc"
touch "$work/root/etc/passwd" "$work/root/etc/group" "$work/root/etc/shadow" "$work/root/etc/gshadow"
systemd-sysusers --root="$work/root" "$PWD/deploy/systemd/cesd.sysusers" >/dev/null 2>&1
grep -q '^cesd:x:[0-9]*:[0-9]*:cesd wallet daemon:/var/lib/cesd:' "$work/root/etc/passwd" || { echo "check: cesd.sysusers made no cesd user" >&2; exit 1; }
grep -q '^cesd-readers:x:[0-9]*:' "$work/root/etc/group" || { echo "check: cesd.sysusers made no cesd-readers group" >&2; exit 1; }
echo "sysusers: ok"

# Exit 2 is a config error (unknown key, bad value); 1 is expected here
# because the wallet folder is empty.
mkdir "$work/wallet"
rc=0
"$work/cesd" inspect --config deploy/systemd/cesd.yaml.example --wallet-dir "$work/wallet" >/dev/null 2>"$work/inspect.err" || rc=$?
if [ "$rc" -eq 2 ]; then cat "$work/inspect.err" >&2; echo "check: cesd rejects cesd.yaml.example" >&2; exit 1; fi
echo "cesd.yaml.example: accepted"
