#!/usr/bin/env bash
# End to end, on one machine with the SIMULATION TEE: starts a coordinator, verifies it, builds
# and encrypts the nginx image for it, sets the manifest, runs the workload with
# `confidant run`, then, as the operator, reads a client certificate and the page token from the
# coordinator and fetches the image's page and the manifest-rendered one through the mesh
# (mutual TLS on port 8443) with curl, checking the server's certificate and host name.
# Finally SIGTERMs the run and checks that its tmpfs is gone. Needs root, runc, umoci, openssl,
# jq, curl, envsubst and nginx. Usage: examples/nginx/try.sh  (CONFIDANT_BIN=path/to/confidant)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
B=${CONFIDANT_BIN:-$here/../../target/debug/confidant}
W=$(mktemp -d "${TMPDIR:-/tmp}/confidant-nginx.XXXXXX")
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
# This workload's run directories (confidant-nginx-XXXXXXXX) mounted under /run/confidant.
run_mounts() { grep -o ' /run/confidant/confidant-nginx-[^ ]*' /proc/self/mounts | sort || true; }

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
CID=$("$B" attest sim config-id --image-digest "$DIGEST" --workload nginx)

say "manifest"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=ops \
  -keyout "$W/ops.key" -out "$W/ops.crt" 2>/dev/null
export MEASUREMENT=$M CONFIG_ID=$CID IMAGE_DIGEST=$DIGEST OPS_CERT="$(sed 's/^/      /' "$W/ops.crt")"
envsubst <"$here/manifest.yaml" >"$W/manifest.yaml"
"$B" manifest set --coordinator "$ADDR" "$W/manifest.yaml" >/dev/null

say "confidant run"
before=$(run_mounts)
"$B" run --coordinator "$ADDR" --workload nginx --tee sim "oci:$W/enc:latest" >"$W/run.out" 2>"$W/run.err" &
RPID=$!

say "operator: client certificate and page token from the coordinator"
ops=(--coordinator "$ADDR" --cert "$W/ops.crt" --key "$W/ops.key")
"$B" -o json secret get "${ops[@]}" nginx_client >"$W/client.json"
jq -r .cert "$W/client.json" >"$W/client.crt"
jq -r .key "$W/client.json" >"$W/client.key"
TOKEN=$("$B" -o json secret get "${ops[@]}" page_token | jq -r .value | base64 -d | od -An -tx1 -v | tr -d ' \n')

# curl checks the chain to the coordinator's root CA and the host name: the manifest adds
# 127.0.0.1 to the mesh certificate (mesh.sans).
get() { # get PATH [curl options]
  local path=$1; shift
  curl -sS --max-time 5 --cacert "$W/root.pem" "$@" "https://127.0.0.1:8443$path" 2>>"$W/curl.err"
}
client=(--cert "$W/client.crt" --key "$W/client.key")
page=
for _ in $(seq 50); do
  kill -0 $RPID 2>/dev/null || { cat "$W/run.err" >&2; fail "confidant run exited early"; }
  page=$(get / "${client[@]}" -f) && break # fails until nginx listens
  sleep 0.2
done
grep -v "WARN ingress" "$W/run.err" | sed "s/^/  run: /" || true
case $page in *"Hello from an encrypted image"*) ;; *) fail "GET / through the mesh: $page $(tail -1 "$W/curl.err")" ;; esac
say "GET / (a page in the image): $(printf %s "$page" | grep -o '<h1>.*</h1>')"
secret=$(get /secret.html "${client[@]}" -f) || fail "GET /secret.html: $(tail -1 "$W/curl.err")"
case $secret in *"<b>nginx</b>"*"<code id=\"token\">$TOKEN</code>"*) ;; *) fail "GET /secret.html: expected the token $TOKEN, got $secret" ;; esac
say "GET /secret.html (rendered by the coordinator): $(printf %s "$secret" | grep -o 'Page token.*' | sed 's/<[^>]*>//g')"
say "nginx runs as uid $(ps -eo uid=,args= | awk '/nginx: (master|worker) process/ && !/awk/ {print $1}' | sort -u | tr '\n' ' ')(www-data in the image)"

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
tail -2 "$W/run.err" | sed 's/^/  run: /'
[ "$code" = 0 ] || fail "confidant run exited with $code"
if grep -q " $mine " /proc/self/mounts || [ -e "$mine" ]; then fail "$mine is left"; fi
ok=1
say "OK: nginx answered through the mesh; the run exited 0 and removed its tmpfs"
