#!/usr/bin/env bash
# Smoke-test a running initscope container over HTTP, then stop it with SIGTERM.
#   scripts/container_smoke.sh CONTAINER BASE_URL     e.g. initscope-ci http://127.0.0.1:18000
# PODMAN names the container CLI (default podman-here; docker works too).
# Checks: ready within 90 s, /livez, a real POST /analyze (layers and a verdict), a PNG via
# ?format=png, the image's HEALTHCHECK, the server not running as root, and SIGTERM ending
# the container with exit code 0 within 10 s. The container is stopped at the end.
set -euo pipefail
container=$1
base=$2
podman=${PODMAN:-podman-here}
example=$(dirname "$0")/../examples/analyze-sigmoid-std1.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; "$podman" logs --tail 30 "$container" >&2 || true; exit 1; }
ok() { echo "ok   $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

t0=$(now)
for _ in $(seq 180); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  [ "$("$podman" inspect -f '{{.State.Running}}' "$container")" = true ] || fail "container exited"
  sleep 0.5
done
curl -fsS -o /dev/null "$base/readyz" || fail "not ready within 90 s"
ok "ready after $(since "$t0") s"

[ "$(curl -fsS "$base/livez")" = '{"status":"alive"}' ] || fail "/livez"
ok "/livez"

t=$(now)
curl -fsS -H 'Content-Type: application/json' --data-binary "@$example" \
  -o "$tmp/analyze.json" "$base/analyze" || fail "POST /analyze"
python3 - "$tmp/analyze.json" <<'PY' || fail "/analyze response"
import json, sys
body = json.load(open(sys.argv[1]))
layers, verdict = body["layers"], body["diagnosis"]["verdict"]
assert len(layers) == 5, len(layers)
assert all(len(layer["activations"]["histogram"]["counts"]) == 30 for layer in layers)
assert isinstance(verdict, str) and verdict, verdict
print(f"     {len(layers)} layers, verdict {verdict!r}")
PY
ok "POST /analyze in $(since "$t") s"

t=$(now)
curl -fsS -H 'Content-Type: application/json' --data-binary "@$example" \
  -o "$tmp/analyze.png" -w '%{content_type}\n' "$base/analyze?format=png" >"$tmp/type" \
  || fail "POST /analyze?format=png"
[ "$(cat "$tmp/type")" = image/png ] || fail "content type $(cat "$tmp/type")"
[ "$(head -c 8 "$tmp/analyze.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
  || fail "not a PNG"
ok "POST /analyze?format=png: $(wc -c <"$tmp/analyze.png") bytes of PNG in $(since "$t") s"

"$podman" healthcheck run "$container" >/dev/null || fail "HEALTHCHECK"
ok "HEALTHCHECK healthy"

uid=$(awk '/^Uid:/ {print $2}' < <("$podman" exec "$container" cat /proc/1/status))
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "PID 1 runs as uid '$uid'"
ok "PID 1 runs as uid $uid"

# Exit code 0: after its graceful shutdown uvicorn re-raises SIGTERM, which the kernel ignores
# for PID 1 without a handler (under an init such as tini the code would be 143).
t=$(now)
"$podman" stop -t 10 "$container" >/dev/null
elapsed=$(since "$t")
code=$("$podman" inspect -f '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || fail "exit code $code after SIGTERM (137: killed after the 10 s grace)"
python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 10)" "$elapsed" || fail "stop took ${elapsed} s"
ok "SIGTERM: exited 0 after $elapsed s"
