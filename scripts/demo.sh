#!/usr/bin/env bash
# The attestation demo: a SIMULATION platform, evidence bound to a nonce and a key, a verdict
# against reference values, a rejection with its reason, then the real hardware samples.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CONFIDANT_BIN:-target/release/confidant}
T=testdata/attestation
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
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

printf '\n\033[1mDemo complete.\033[0m Simulation steps prove the protocol, not hardware isolation.\n'
