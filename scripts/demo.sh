#!/usr/bin/env bash
# The demo: attestation (a SIMULATION platform, evidence bound to a nonce and a key, a verdict
# against reference values, a rejection with its reason, the real hardware samples), then the
# coordinator: verified by a client, given a manifest, activating a workload that proves what it
# runs, refusing one that does not.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CONFIDANT_BIN:-target/release/confidant}
T=testdata/attestation
WORK=$(mktemp -d)
COORD_PID=""
cleanup() {
  if [ -n "$COORD_PID" ]; then kill "$COORD_PID" 2>/dev/null || true; wait "$COORD_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export CONFIDANT_HOME="$WORK/home"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# Runs a command that must exit with the given code.
expect() { local want=$1; shift; printf '$ %s\n' "$*"; set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
  echo "(exit $got, as expected)"; }

step "1. Create a SIMULATION platform (a software key standing in for TEE hardware)"
run "$BIN" attest sim init

step "2. A workload key and a fresh nonce from the verifier"
openssl genpkey -algorithm ed25519 -out "$WORK/workload.key" 2>/dev/null
openssl pkey -in "$WORK/workload.key" -pubout -out "$WORK/workload.pub"
NONCE=$(openssl rand -hex 32)
echo "nonce: $NONCE"

step "3. The workload produces evidence binding the nonce and its public key"
echo "launched workload: $BIN (its SHA-384 is the measurement)"
run "$BIN" attest sim quote --nonce "$NONCE" --public-key "$WORK/workload.pub" \
  --launch "$BIN" --product-id 1 --svn 2 --out "$WORK/evidence.json"
run "$BIN" attest inspect "$WORK/evidence.json"

step "4. Reference values: the expected measurement, product and minimum SVN"
MEASUREMENT=$(sha384sum "$BIN" | cut -d' ' -f1)
cat > "$WORK/reference.yaml" <<YAML
tee: sim
measurements: ["$MEASUREMENT"]
product_id: 1
min_svn: 2
YAML
cat "$WORK/reference.yaml"

step "5. Verify: signature, platform key, reference values and the nonce/key binding"
expect 0 "$BIN" attest verify "$WORK/evidence.json" --allow-simulation \
  --reference-values "$WORK/reference.yaml" --nonce "$NONCE" --public-key "$WORK/workload.pub"

step "6. A replay: the same evidence against a new nonce is rejected, and says why"
expect 1 "$BIN" attest verify "$WORK/evidence.json" --allow-simulation \
  --reference-values "$WORK/reference.yaml" --nonce "$(openssl rand -hex 32)" --public-key "$WORK/workload.pub"

step "7. Simulation evidence is never accepted silently: without --allow-simulation it is refused"
expect 1 "$BIN" attest verify "$WORK/evidence.json"

step "8. Real Intel SGX DCAP quote (collateral verified offline as of a time inside its window)"
expect 0 "$BIN" attest verify "$T/sgx/quote.bin" --collateral "$T/sgx/collateral.json" --at 2025-06-19T12:00:00Z

step "9. Real Intel TDX quote"
expect 0 "$BIN" attest verify "$T/tdx/quote.bin" --collateral "$T/tdx/collateral.json" --at 2025-06-19T12:00:00Z

step "10. Real TDX quote from an out-of-date platform: rejected"
expect 1 "$BIN" attest verify "$T/tdx/quote_outdated.bin" --collateral "$T/tdx/collateral_outdated.json" --at 2026-03-01T00:00:00Z

step "11. Real AMD SEV-SNP report (Milan), VCEK chained to the built-in AMD roots"
expect 0 "$BIN" attest verify "$T/snp/report_milan.hex" --vcek "$T/snp/vcek_milan.der"

step "12. Start the coordinator (SIMULATION TEE: its evidence and sealing key come from the platform key)"
"$BIN" coordinator run --listen 127.0.0.1:0 --no-metrics >"$WORK/coordinator.out" 2>"$WORK/coordinator.log" &
COORD_PID=$!
for _ in $(seq 100); do grep -q https:// "$WORK/coordinator.out" 2>/dev/null && break; sleep 0.1; done
cat "$WORK/coordinator.out"
ADDR=$(grep -o 'https://[^ ]*' "$WORK/coordinator.out" | head -1 | sed 's|https://||')
PORT=${ADDR##*:}

step "13. A client verifies the coordinator: evidence bound to a fresh nonce and the root CA, measurement = the confidant binary"
printf '{"measurements": ["%s"]}\n' "$MEASUREMENT" >"$WORK/coordinator-ref.json"
printf '{"measurements": ["%s"]}\n' "$(printf other | sha384sum | cut -d' ' -f1)" >"$WORK/wrong-ref.json"
expect 1 "$BIN" verify --coordinator "$ADDR" --reference-values "$WORK/wrong-ref.json"
expect 0 "$BIN" verify --coordinator "$ADDR" --reference-values "$WORK/coordinator-ref.json"
"$BIN" certificate root --coordinator "$ADDR" >"$WORK/root.pem"

step "14. The manifest: a package (the measurement the workload must show), a workload, secrets, a user"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=alice \
  -keyout "$WORK/alice.key" -out "$WORK/alice.crt" 2>/dev/null
cat >"$WORK/manifest.yaml" <<YAML
apiVersion: confidant/v1
packages:
  web:
    tee: sim
    reference_values: {measurements: ["$MEASUREMENT"], min_svn: 2}
workloads:
  web:
    package: web
    files:
      /etc/web/db.conf: "password={{ db_password.value }}"
      /etc/web/ca.pem: "{{ confidant.root_ca }}"
    env: {SESSION_KEY: "{{ session_key.hex }}"}
secrets:
  session_key: {type: symmetric-key, size: 256}
  db_password: {type: plain}
users:
  alice:
    certificate: |
$(sed 's/^/      /' "$WORK/alice.crt")
roles:
  ops:
    users: [alice]
    rules: [{resource: secrets, names: [db_password], actions: [write]}, {resource: manifest, actions: [update]}]
config:
  allow_simulation: true
YAML
sed -n '1,17p' "$WORK/manifest.yaml"; echo "  ..."
run "$BIN" manifest set --coordinator "$ADDR" "$WORK/manifest.yaml"
run "$BIN" secret set --coordinator "$ADDR" --cert "$WORK/alice.crt" --key "$WORK/alice.key" db_password --value 'correct horse battery staple'
echo "without alice's certificate, the same write is refused:"
expect 1 "$BIN" secret set --coordinator "$ADDR" db_password --value nope

step "15. A workload activates: a key and CSR, a nonce from the coordinator, evidence binding both"
# TLS to the coordinator is pinned to the root CA the client just verified.
api() { curl -sS --cacert "$WORK/root.pem" --resolve "localhost:$PORT:127.0.0.1" "https://localhost:$PORT/api/v1/$1" "${@:2}"; }
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=web \
  -keyout "$WORK/web.key" -out "$WORK/web.csr" 2>/dev/null
openssl req -in "$WORK/web.csr" -pubkey -noout >"$WORK/web.pub"
activate() { # activate LAUNCHED_FILE OUT
  local nonce
  nonce=$(api nonce -X POST | jq -r .nonce)
  "$BIN" attest sim quote --nonce "$nonce" --public-key "$WORK/web.pub" --launch "$1" \
    --product-id 1 --svn 2 --out "$WORK/ev.json" >/dev/null
  jq -n --arg nonce "$nonce" --rawfile csr "$WORK/web.csr" --slurpfile ev "$WORK/ev.json" \
    '{workload: "web", nonce: $nonce, csr: $csr, evidence: $ev[0]}' >"$WORK/activate.json"
  api activate -H 'Content-Type: application/json' --data-binary @"$WORK/activate.json" -o "$2" -w '%{http_code}'
}
code=$(activate "$BIN" "$WORK/activation.json")
echo "HTTP $code"
jq '{activation, simulation, files: .parameters.files | map_values(.[0:60]), env: .parameters.env}' "$WORK/activation.json"
jq -r .certificate "$WORK/activation.json" >"$WORK/web.crt"
"$BIN" certificate chain --coordinator "$ADDR" >"$WORK/chain.pem"
run openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/chain.pem" "$WORK/web.crt"

step "16. A workload that runs something else (another measurement) gets nothing, and is told why"
printf 'tampered' >"$WORK/tampered"
code=$(activate "$WORK/tampered" "$WORK/refused.json")
echo "HTTP $code"
jq .error "$WORK/refused.json"
[ "$code" = 422 ] || { echo "demo: expected 422, got $code" >&2; exit 1; }
run "$BIN" status --coordinator "$ADDR"

printf '\n\033[1mDemo complete.\033[0m Simulation steps prove the protocol, not hardware isolation.\n'
