#!/usr/bin/env bash
# The demo: an unmodified Redis from an encrypted image, run attested, reached over mutual TLS.
# A coordinator starts; a client verifies it; the image is built from Debian's redis-server and
# encrypted for the coordinator; a manifest says what may run; a tampered image is refused; the
# real one runs with its password from the coordinator; SET and GET go through the mesh; then
# everything is torn down. Ends with real SGX, TDX and SEV-SNP evidence verified offline.
# SIMULATION: this machine has no TEE; the coordinator's and the workload's evidence is signed
# by a software key, and the isolation is a runc container on the host kernel.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(realpath "${CONFIDANT_BIN:-target/release/confidant}")
T=testdata/attestation
WORK=$(mktemp -d /tmp/confidant-demo.XXXXXX)
export CONFIDANT_HOME="$WORK/home"
COORD_PID="" RUN_PID=""
cleanup() {
  if [ -n "$RUN_PID" ]; then kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; fi
  if [ -n "$COORD_PID" ]; then kill "$COORD_PID" 2>/dev/null || true; wait "$COORD_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
expect() { local want=$1; shift; printf '$ %s\n' "$*"; set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
  echo "(exit $got, as expected)"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

step "1. Start the coordinator (SIMULATION TEE: no TEE hardware on this machine)"
"$BIN" attest sim init >/dev/null
"$BIN" coordinator run --listen 127.0.0.1:0 --no-metrics >"$WORK/coordinator.out" 2>"$WORK/coordinator.log" &
COORD_PID=$!
for _ in $(seq 200); do grep -q https:// "$WORK/coordinator.out" 2>/dev/null && break; sleep 0.05; done
cat "$WORK/coordinator.out"
ADDR=$(grep -o 'https://[^ ]*' "$WORK/coordinator.out" | sed 's|https://||')

step "2. Verify it: its evidence binds our nonce and its root CA; its measurement is the confidant binary"
MEASUREMENT=$(sha384sum "$BIN" | cut -d' ' -f1)
printf '{"measurements": ["%s"]}\n' "$MEASUREMENT" >"$WORK/coordinator-ref.json"
run "$BIN" verify --coordinator "$ADDR" --reference-values "$WORK/coordinator-ref.json"

step "3. Build Redis's image from Debian's redis-server (unmodified) and encrypt it for the coordinator"
examples/redis/build-image.sh "$WORK/plain" >/dev/null
"$BIN" certificate image-key --coordinator "$ADDR" >"$WORK/image-key.pem"
run "$BIN" image encrypt --coordinator-key "$WORK/image-key.pem" oci:"$WORK/plain":latest oci:"$WORK/redis":latest
rm -rf "$WORK/plain"
IMAGE_DIGEST=$("$BIN" -o json image inspect oci:"$WORK/redis":latest | jq -r .digest)

step "4. The manifest: which code may run (measurement + config id), which image, Redis's config with a generated password"
CONFIG_ID=$("$BIN" attest sim config-id --image-digest "$IMAGE_DIGEST" --workload redis)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=ops \
  -keyout "$WORK/ops.key" -out "$WORK/ops.crt" 2>/dev/null
OPS_CERT=$(sed 's/^/      /' "$WORK/ops.crt")
export MEASUREMENT CONFIG_ID IMAGE_DIGEST OPS_CERT
envsubst <examples/redis/manifest.yaml >"$WORK/manifest.yaml"
sed -n '/^workloads:/,/^secrets:/p' "$WORK/manifest.yaml" | sed '$d'
run "$BIN" manifest set --coordinator "$ADDR" "$WORK/manifest.yaml"

step "5. A tampered image is refused before anything runs, and nothing is left behind"
cp -r "$WORK/redis" "$WORK/tampered"
LAYER=$(ls -S "$WORK/tampered/blobs/sha256" | head -1)
printf '\x00' | dd of="$WORK/tampered/blobs/sha256/$LAYER" bs=1 seek=4096 conv=notrunc status=none
expect 125 "$BIN" run --coordinator "$ADDR" --workload redis --tee sim oci:"$WORK/tampered":latest
mount | grep -q /run/confidant/ && { echo "demo: a mount was left" >&2; exit 1; } || echo "no mounts left under /run/confidant"

step "6. Run Redis: attest, receive keys and config, decrypt into memory, start the mTLS mesh, runc"
"$BIN" run --coordinator "$ADDR" --workload redis --tee sim oci:"$WORK/redis":latest >"$WORK/run.out" 2>"$WORK/run.err" &
RUN_PID=$!
for _ in $(seq 300); do port_open 6380 && break; kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
grep '^confidant run' "$WORK/run.err"

step "7. SET and GET through the mesh: a client certificate and the password, both from the coordinator"
sec() { "$BIN" -o json secret get --coordinator "$ADDR" --cert "$WORK/ops.crt" --key "$WORK/ops.key" "$1"; }
sec redis_client | jq -r .cert >"$WORK/client.crt"
sec redis_client | jq -r .key >"$WORK/client.key"
PASSWORD=$(sec redis_password | jq -r .value | base64 -d | od -An -tx1 | tr -d ' \n')
"$BIN" certificate root --coordinator "$ADDR" >"$WORK/root.pem"
cli() { redis-cli --tls --cacert "$WORK/root.pem" --cert "$WORK/client.crt" --key "$WORK/client.key" \
  -h 127.0.0.1 -p 6380 --no-auth-warning -a "$PASSWORD" "$@"; }
# The mesh listens before Redis does: wait until Redis answers through it.
for _ in $(seq 100); do [ "$(cli PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
echo '$ redis-cli --tls --cert client.crt … -p 6380 SET greeting "hello from an encrypted image"'
cli SET greeting "hello from an encrypted image"
echo '$ redis-cli --tls --cert client.crt … -p 6380 GET greeting'
cli GET greeting
echo "without a client certificate the mesh refuses:"
redis-cli --tls --cacert "$WORK/root.pem" -h 127.0.0.1 -p 6380 PING 2>&1 | head -1 || true
echo "Redis's own plain port is in the app's network namespace, not on the host:"
echo '$ redis-cli -p 6379 PING'
redis-cli -h 127.0.0.1 -p 6379 PING 2>&1 | head -1 || true

step "8. Stop: the app exits, the mesh stops, the tmpfs with the decrypted image is unmounted"
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=""
tail -1 "$WORK/run.err"
mount | grep -q /run/confidant/ && { echo "demo: a mount was left" >&2; exit 1; } || echo "no mounts left under /run/confidant"
run "$BIN" status --coordinator "$ADDR"

step "9. The hardware paths, on real evidence captured from hardware (verified offline)"
hw() { printf '$ confidant attest verify %s\n' "${*:1:1}"; "$BIN" attest verify "$@" | grep -E '^  (tee|measurement|tcb_status) |^verdict'; }
hw "$T/sgx/quote.bin" --collateral "$T/sgx/collateral.json" --at 2025-06-19T12:00:00Z
hw "$T/tdx/quote.bin" --collateral "$T/tdx/collateral.json" --at 2025-06-19T12:00:00Z
hw "$T/snp/report_milan.hex" --vcek "$T/snp/vcek_milan.der"

printf '\n\033[1mDemo complete.\033[0m Simulation steps prove the protocol, not hardware isolation.\n'
