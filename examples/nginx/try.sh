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
# shellcheck source=../try-lib.sh
. "$here/../try-lib.sh"
try_begin nginx
try_coordinator
try_image
try_manifest
try_run

say "operator: client certificate and page token from the coordinator"
try_client_cert nginx_client
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
