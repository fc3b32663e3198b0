#!/usr/bin/env bash
# Soak the real cesd binary against the in-process CES simulator (issue 7):
# a rotation every 2s, a 5s poll, random CES faults, bogus callbacks. Asserts
# RSS, goroutines, fds and generations on disk stay flat and that no secret
# reaches the log, then plots the samples.
#
#   scripts/soak.sh            # 1 hour (outside CI)
#   scripts/soak.sh 10m        # the CI variant
#   SOAK_OUT=/tmp/soak SOAK_PNG=docs/soak.png scripts/soak.sh 1h
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-${CESD_SOAK_DURATION:-1h}}
out=${SOAK_OUT:-$(mktemp -d /tmp/cesd-soak.XXXXXX)}
mkdir -p "$out"
echo "soak: $dur, output in $out"
status=0
CESD_SOAK_DURATION=$dur CESD_SOAK_OUT=$out \
  go test -tags soak -run '^TestSoak$' -count=1 -timeout 0 -v ./cmd/cesd | tee "$out/test.out" || status=$?
if [ -s "$out/soak.csv" ] && command -v gnuplot >/dev/null; then
  png=${SOAK_PNG:-$out/soak.png}
  gnuplot -e "csv='$out/soak.csv'; png='$png'; title='cesd soak, $dur: rotation every 2s, poll 5s, random CES faults, bogus callbacks'" scripts/soak.gnuplot
  echo "plot: $png"
fi
[ -f "$out/summary.txt" ] && cat "$out/summary.txt"
exit "$status"
