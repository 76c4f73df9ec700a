#!/usr/bin/env bash
# Redis end to end: a coordinator, the image built and encrypted for it, the manifest, an
# attested `confidant run`, then SET and GET through the mesh (mutual TLS) with the password
# from a coordinator secret, and a clean stop. Prints a few lines; exits non-zero on any failure.
#   examples/redis/try.sh            (CONFIDANT_BIN=path/to/confidant to choose the binary)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
B=${CONFIDANT_BIN:-$here/../../target/debug/confidant}
W=$(mktemp -d /tmp/confidant-redis.XXXXXX)
export CONFIDANT_HOME=$W/home
CPID="" RPID=""
cleanup() {
  [ -n "$RPID" ] && kill -TERM "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null || true
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$B" attest sim init >/dev/null
"$B" coordinator run --listen 127.0.0.1:0 --no-metrics >"$W/coordinator.out" 2>"$W/coordinator.log" &
CPID=$!
for _ in $(seq 200); do grep -q https:// "$W/coordinator.out" 2>/dev/null && break; sleep 0.05; done
ADDR=$(grep -o 'https://[^ ]*' "$W/coordinator.out" | sed 's|https://||')
MEASUREMENT=$(sha384sum "$B" | cut -d' ' -f1)
printf '{"measurements": ["%s"]}\n' "$MEASUREMENT" >"$W/coordinator-ref.json"
"$B" verify --coordinator "$ADDR" --reference-values "$W/coordinator-ref.json" >/dev/null
"$B" certificate image-key --coordinator "$ADDR" >"$W/image-key.pem"

"$here/build-image.sh" "$W/plain" >/dev/null
"$B" image encrypt --coordinator-key "$W/image-key.pem" oci:"$W/plain":latest oci:"$W/enc":latest >/dev/null
IMAGE_DIGEST=$("$B" -o json image inspect oci:"$W/enc":latest | jq -r .digest)
CONFIG_ID=$("$B" attest sim config-id --image-digest "$IMAGE_DIGEST" --workload redis)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=ops \
  -keyout "$W/ops.key" -out "$W/ops.crt" 2>/dev/null
OPS_CERT=$(sed 's/^/      /' "$W/ops.crt")
export MEASUREMENT CONFIG_ID IMAGE_DIGEST OPS_CERT
envsubst <"$here/manifest.yaml" >"$W/manifest.yaml"
"$B" manifest set --coordinator "$ADDR" "$W/manifest.yaml" >/dev/null

"$B" run --coordinator "$ADDR" --workload redis --tee sim oci:"$W/enc":latest >"$W/run.out" 2>"$W/run.err" &
RPID=$!
for _ in $(seq 300); do port_open 6380 && break; kill -0 $RPID 2>/dev/null || break; sleep 0.1; done
port_open 6380 || { cat "$W/run.err" >&2; echo "redis never listened on the mesh port" >&2; exit 1; }
sec() { "$B" -o json secret get --coordinator "$ADDR" --cert "$W/ops.crt" --key "$W/ops.key" "$1"; }
sec redis_client | jq -r .cert >"$W/client.crt"
sec redis_client | jq -r .key >"$W/client.key"
PASSWORD=$(sec redis_password | jq -r .value | base64 -d | od -An -tx1 | tr -d ' \n')
"$B" certificate root --coordinator "$ADDR" >"$W/root.pem"
cli() { redis-cli --tls --cacert "$W/root.pem" --cert "$W/client.crt" --key "$W/client.key" \
  -h 127.0.0.1 -p 6380 --no-auth-warning "$@"; }
# The mesh listens before Redis does: wait until Redis answers through it.
for _ in $(seq 100); do [ "$(cli -a "$PASSWORD" PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(cli -a "$PASSWORD" SET greeting 'hello from a TEE')" = OK ]
[ "$(cli -a "$PASSWORD" GET greeting)" = 'hello from a TEE' ]
echo "redis: SET and GET through the mesh (mutual TLS, password from the coordinator): ok"
# Without the password Redis refuses; without a client certificate the mesh refuses.
cli GET greeting 2>&1 | grep -q NOAUTH
! redis-cli --tls --cacert "$W/root.pem" -h 127.0.0.1 -p 6380 -a "$PASSWORD" --no-auth-warning PING >/dev/null 2>&1
kill -TERM "$RPID"; code=0; wait "$RPID" || code=$?; RPID=""
echo "confidant run exited with $code"
! grep -q " $W" /proc/self/mountinfo && ! grep -q confidant-redis /proc/self/mountinfo
echo "redis: stopped, nothing mounted"
