#!/usr/bin/env bash
# End to end, on one machine with the SIMULATION TEE: starts a coordinator, verifies it, builds
# and encrypts the memcached image for it, sets the manifest, runs the workload with
# `confidant run`, then, as the operator, reads memcached's password and a client certificate
# from the coordinator and stores and reads a key through the mesh (mutual TLS on port 11212).
# Finally SIGTERMs the run and checks that its tmpfs is gone. Needs root, runc, umoci, openssl,
# jq, envsubst and memcached. Usage: examples/memcached/try.sh  (CONFIDANT_BIN=path/to/confidant)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../try-lib.sh
. "$here/../try-lib.sh"
try_begin memcached
try_coordinator
try_image
try_manifest
try_run

say "operator: client certificate and memcached password from the coordinator"
try_client_cert memcached_client
PASS=$("$B" -o json secret get "${ops[@]}" memcached_password | jq -r .value | base64 -d | od -An -tx1 -v | tr -d ' \n')

# memcached's ASCII protocol through the mesh: authenticate (a `set` whose data is
# "user password"), store a key, read it back.
mc() { # mc [s_client options]: sends the request on stdin, prints memcached's answers
  timeout 5 openssl s_client -quiet -verify_return_error -connect 127.0.0.1:11212 \
    -CAfile "$W/root.pem" "$@" 2>>"$W/s_client.err"
}
request=$(printf 'set auth 0 0 %d\r\ncache %s\r\nset greeting 0 0 5\r\nhello\r\nget greeting\r\nquit\r\n' $((6 + ${#PASS})) "$PASS")
want=$(printf 'STORED\r\nSTORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n')
got=
for _ in $(seq 50); do
  kill -0 $RPID 2>/dev/null || { cat "$W/run.err" >&2; fail "confidant run exited early"; }
  got=$(printf '%s' "$request" | mc -cert "$W/client.crt" -cert_chain "$W/client.crt" -key "$W/client.key" || true)
  [ -n "$got" ] && break # empty: memcached is not listening yet
  sleep 0.2
done
grep -v "WARN ingress" "$W/run.err" | sed "s/^/  run: /" || true
[ "$got" = "$want" ] || fail "through the mesh, expected $(printf %q "$want"), got $(printf %q "$got")"
say "through the mesh: $(printf %s "$got" | tr -d '\r' | tr '\n' ' ')"
say "memcached runs as uid $(ps -eo uid=,args= | awk '/[\/]usr\/bin\/memcached .*\/etc\/memcached\/auth/ {print $1}') (memcache in the image)"

# The mesh refuses a client without a certificate from the coordinator's CA.
got=$(printf '%s' "$request" | mc || true)
[ -z "$got" ] || fail "a client without a certificate got an answer: $got"
refusal=$(grep -o 'alert certificate required' "$W/s_client.err" | tail -1)
[ -n "$refusal" ] || fail "a client without a certificate: expected a TLS alert, see $W/s_client.err"
say "without a client certificate: refused ($refusal)"
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
say "OK: memcached answered through the mesh; the run exited 0 and removed its tmpfs"
