#!/usr/bin/env bash
# End to end, on one machine with the SIMULATION TEE: starts a coordinator, verifies it, builds
# the Python app's image and encrypts it for the coordinator (then deletes the plain image: the
# app's code is only in encrypted layers), sets the manifest, and as the operator sets the
# `greeting` secret; runs the workload with `confidant run`, gets a client certificate from the
# coordinator and calls GET / through the mesh (mutual TLS on port 8001) with curl, checking the
# server's certificate and host name and that the answer carries the greeting. Finally SIGTERMs
# the run and checks that its tmpfs is gone. Needs root, runc, umoci, openssl, jq, curl, envsubst
# and Debian's python3.11. Usage: examples/python/try.sh   (CONFIDANT_BIN=path/to/confidant)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
B=${CONFIDANT_BIN:-$here/../../target/debug/confidant}
W=$(mktemp -d "${TMPDIR:-/tmp}/confidant-python-app.XXXXXX")
export CONFIDANT_HOME=$W/home
say() { printf '== %s\n' "$*"; }
fail() { printf 'try.sh: FAIL: %s (logs in %s)\n' "$*" "$W" >&2; exit 1; }
CPID= RPID= ok=
cleanup() {
  if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then kill -TERM "$RPID"; wait "$RPID" || true; fi
  if [ -n "$CPID" ]; then kill "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; fi
  # Kept after a failure, or with KEEP=1: logs, keys, images.
  if [ -n "$ok" ] && [ -z "${KEEP:-}" ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
# This workload's run directories (confidant-python-app-XXXXXXXX) mounted under /run/confidant.
run_mounts() { grep -o ' /run/confidant/confidant-python-app-[^ ]*' /proc/self/mounts | sort || true; }

say "coordinator (SIMULATION TEE) in $W"
"$B" attest sim init >/dev/null
"$B" coordinator run --listen 127.0.0.1:0 --no-metrics >"$W/coord.out" 2>"$W/coord.log" &
CPID=$!
for _ in $(seq 100); do grep -q https:// "$W/coord.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o 'https://[^ ]*' "$W/coord.out" | sed 's|https://||') || fail "the coordinator did not start"
M=$(sha384sum "$B" | cut -d' ' -f1)
printf '{"measurements":["%s"]}' "$M" >"$W/ref.json"
"$B" verify --coordinator "$ADDR" --reference-values "$W/ref.json" >/dev/null
"$B" certificate root --coordinator "$ADDR" >"$W/root.pem"
"$B" certificate image-key --coordinator "$ADDR" >"$W/coord-image.pub"

say "image: build, encrypt for the coordinator"
"$here/build-image.sh" "$W/plain" >/dev/null
"$B" image encrypt --coordinator-key "$W/coord-image.pub" "oci:$W/plain:latest" "oci:$W/enc:latest" >/dev/null
DIGEST=$("$B" -o json image inspect "oci:$W/enc:latest" | jq -r .digest)
"$B" -o json image inspect "oci:$W/enc:latest" | jq -e '[.layers[].encrypted] | all' >/dev/null ||
  fail "the image has a layer that is not encrypted"
rm -rf "$W/plain"
CID=$("$B" attest sim config-id --image-digest "$DIGEST" --workload python-app)

say "manifest"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=ops \
  -keyout "$W/ops.key" -out "$W/ops.crt" 2>/dev/null
export MEASUREMENT=$M CONFIG_ID=$CID IMAGE_DIGEST=$DIGEST OPS_CERT="$(sed 's/^/      /' "$W/ops.crt")"
envsubst <"$here/manifest.yaml" >"$W/manifest.yaml"
"$B" manifest set --coordinator "$ADDR" "$W/manifest.yaml" >/dev/null
ops=(--coordinator "$ADDR" --cert "$W/ops.crt" --key "$W/ops.key")
GREETING="Hello from inside the TEE, $(date -u +%H:%M:%S)"
printf '%s' "$GREETING" | "$B" secret set "${ops[@]}" --file - greeting >/dev/null
say "operator: set the greeting: $GREETING"

say "confidant run"
before=$(run_mounts)
"$B" run --coordinator "$ADDR" --workload python-app --tee sim "oci:$W/enc:latest" >"$W/run.out" 2>"$W/run.err" &
RPID=$!

say "operator: client certificate from the coordinator"
"$B" -o json secret get "${ops[@]}" python_client >"$W/client.json"
jq -r .cert "$W/client.json" >"$W/client.crt"
jq -r .key "$W/client.json" >"$W/client.key"

# curl checks the chain to the coordinator's root CA and the host name: the manifest adds
# 127.0.0.1 to the mesh certificate (mesh.sans).
get() { # get PATH [curl options]
  local path=$1; shift
  curl -sS --max-time 5 --cacert "$W/root.pem" "$@" "https://127.0.0.1:8001$path" 2>>"$W/curl.err"
}
client=(--cert "$W/client.crt" --key "$W/client.key")
answer=
for _ in $(seq 100); do
  kill -0 $RPID 2>/dev/null || { cat "$W/run.err" >&2; fail "confidant run exited early"; }
  answer=$(get / "${client[@]}" -f) && break # fails until the app listens
  sleep 0.2
done
grep -v "WARN ingress" "$W/run.err" | sed "s/^/  run: /" || true
[ "$(printf %s "$answer" | jq -r .greeting 2>/dev/null)" = "$GREETING" ] ||
  fail "GET / through the mesh: expected the greeting, got: $answer $(tail -1 "$W/curl.err")"
[ "$(printf %s "$answer" | jq -r .workload)" = python-app ] || fail "GET /: expected workload python-app: $answer"
[ "$(printf %s "$answer" | jq -r .uid)" = 10001 ] || fail "GET /: expected uid 10001 (app): $answer"
say "GET / through the mesh: $answer"

# The mesh refuses a client without a certificate from the coordinator's CA.
if get / >/dev/null; then fail "a client without a certificate got an answer"; fi
say "without a client certificate: refused ($(tail -1 "$W/curl.err"))"
mine=$(comm -13 <(printf '%s\n' "$before") <(run_mounts) | sed 's/^ //;/^$/d')
[ -n "$mine" ] || fail "no tmpfs of this run under /run/confidant"
say "the run's tmpfs: $mine"

say "SIGTERM"
kill -TERM $RPID
code=0; wait $RPID || code=$?
RPID=
tail -3 "$W/run.err" | sed 's/^/  run: /'
[ "$code" = 0 ] || fail "confidant run exited with $code"
if grep -q " $mine " /proc/self/mounts || [ -e "$mine" ]; then fail "$mine is left"; fi
ok=1
say "OK: the app answered through the mesh with the greeting; the run exited 0 and removed its tmpfs"
