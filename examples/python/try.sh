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
# shellcheck source=../try-lib.sh
. "$here/../try-lib.sh"
try_begin python-app
try_coordinator
try_image
"$B" -o json image inspect "oci:$W/enc:latest" | jq -e '[.layers[].encrypted] | all' >/dev/null ||
  fail "the image has a layer that is not encrypted"
rm -rf "$W/plain"
try_manifest
GREETING="Hello from inside the TEE, $(date -u +%H:%M:%S)"
printf '%s' "$GREETING" | "$B" secret set "${ops[@]}" --file - greeting >/dev/null
say "operator: set the greeting: $GREETING"
try_run

say "operator: client certificate from the coordinator"
try_client_cert python_client

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
