#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the real vectors in testdata/attestation/.
#
# The corpora are not committed (fuzz/corpus is ignored): run this before fuzzing. It is
# idempotent and only adds files, so an existing corpus keeps what libFuzzer has found.
#
#   fuzz/seed.sh            # seed every target that has seeds here
#   fuzz/seed.sh dcap_quote # seed one
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
td="$here/../testdata/attestation"
corpus="$here/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

hex2bin() { # hex text on stdin (whitespace allowed) -> bytes on stdout
    if command -v xxd >/dev/null; then
        tr -d ' \t\r\n' | xxd -r -p
    else
        perl -0777 -ne 's/\s+//g; print pack("H*", $_)'
    fi
}
bin2hex() { perl -0777 -ne 'print unpack("H*", $_)'; }
b64() { base64 | tr -d '\n'; }

put() { # put TARGET NAME SRCFILE
    mkdir -p "$corpus/$1"
    cp "$3" "$corpus/$1/seed-$2"
}

# Raw vectors, in binary.
hex2bin <"$td/snp/report_milan.hex" >"$tmp/snp_report.bin"
[ "$(wc -c <"$tmp/snp_report.bin")" -eq 1184 ] || {
    echo "seed.sh: snp/report_milan.hex is not a 1184-byte report" >&2
    exit 1
}

# A simulation report (layout in docs/formats/sim-evidence.md): magic, version 1, flags,
# product id 7, svn 3, measurement, report data, platform key, Ed25519 signature. With openssl
# the signature is real, so the target also reaches the accepting paths; without it the
# signature is zeros and only parsing is seeded.
sim_report() { # sim_report FLAGS_HEX OUT
    local flags="$1" out="$2" pub sig
    if command -v openssl >/dev/null && openssl genpkey -algorithm ed25519 -out "$tmp/k.pem" 2>/dev/null; then
        pub="$(openssl pkey -in "$tmp/k.pem" -pubout -outform DER | tail -c 32 | bin2hex)"
    else
        pub="$(printf '%064d' 0)"
    fi
    {
        printf '4346445453494d01' # "CFDTSIM\x01"
        printf '0100%s07000300' "$flags"
        printf 'aa%.0s' $(seq 48)
        printf '55%.0s' $(seq 64)
        printf '%s' "$pub"
    } | hex2bin >"$tmp/signed.bin"
    if [ -f "$tmp/k.pem" ]; then
        openssl pkeyutl -sign -inkey "$tmp/k.pem" -rawin -in "$tmp/signed.bin" -out "$tmp/sig.bin"
    else
        head -c 64 /dev/zero >"$tmp/sig.bin"
    fi
    cat "$tmp/signed.bin" "$tmp/sig.bin" >"$out"
    rm -f "$tmp/k.pem"
    [ "$(wc -c <"$out")" -eq 224 ]
}
sim_report 0000 "$tmp/sim.bin"
sim_report 0100 "$tmp/sim_debug.bin"

envelope() { # envelope TEE EVIDENCE_FILE [ENDORSEMENTS_JSON]
    printf '{"tee":"%s","evidence":"%s"%s}' "$1" "$(b64 <"$2")" "${3:+,\"endorsements\":$3}"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dcap_quote snp_report snp_endorsements evidence_envelope sim_report collateral coordinator_requests kube_generate)

for t in "${targets[@]}"; do
    case "$t" in
    dcap_quote)
        put "$t" sgx-quote.bin "$td/sgx/quote.bin"
        put "$t" tdx-quote.bin "$td/tdx/quote.bin"
        put "$t" tdx-quote-outdated.bin "$td/tdx/quote_outdated.bin"
        ;;
    snp_report)
        put "$t" snp-report-milan.bin "$tmp/snp_report.bin"
        ;;
    snp_endorsements)
        put "$t" vcek-milan.der "$td/snp/vcek_milan.der"
        put "$t" cert-chain-milan.pem "$td/snp/cert_chain_milan.pem"
        # A VCEK bundle (VCEK, ASK, ARK) as Azure serves it, and one of the Milan report's own.
        put "$t" azure-certs.pem "$td/azure/certs.pem"
        if command -v openssl >/dev/null; then
            { openssl x509 -inform DER -in "$td/snp/vcek_milan.der"; cat "$td/snp/cert_chain_milan.pem"; } >"$tmp/bundle.pem"
            put "$t" vcek-bundle-milan.pem "$tmp/bundle.pem"
        fi
        ;;
    evidence_envelope)
        put "$t" sgx-quote.bin "$td/sgx/quote.bin"
        put "$t" tdx-quote.bin "$td/tdx/quote.bin"
        put "$t" snp-report-milan.bin "$tmp/snp_report.bin"
        put "$t" snp-report-milan.hex "$td/snp/report_milan.hex"
        put "$t" sim.bin "$tmp/sim.bin"
        b64 <"$td/tdx/quote.bin" >"$tmp/tdx.b64"
        put "$t" tdx-quote.b64 "$tmp/tdx.b64"
        envelope tdx "$td/tdx/quote.bin" "{\"collateral\":$(cat "$td/tdx/collateral.json")}" >"$tmp/env-tdx.json"
        put "$t" envelope-tdx.json "$tmp/env-tdx.json"
        envelope snp "$tmp/snp_report.bin" \
            "{\"vcek\":\"$(b64 <"$td/snp/vcek_milan.der")\",\"cert_chain\":$(perl -0777 -pe 's/\\/\\\\/g; s/"/\\"/g; s/\n/\\n/g' "$td/snp/cert_chain_milan.pem" | sed 's/^/"/; s/$/"/')}" \
            >"$tmp/env-snp.json"
        put "$t" envelope-snp.json "$tmp/env-snp.json"
        envelope sim "$tmp/sim.bin" >"$tmp/env-sim.json"
        put "$t" envelope-sim.json "$tmp/env-sim.json"
        ;;
    sim_report)
        put "$t" sim.bin "$tmp/sim.bin"
        put "$t" sim-debug.bin "$tmp/sim_debug.bin"
        ;;
    collateral)
        put "$t" tdx-collateral.json "$td/tdx/collateral.json"
        put "$t" tdx-collateral-outdated.json "$td/tdx/collateral_outdated.json"
        put "$t" sgx-collateral.json "$td/sgx/collateral.json"
        ;;
    coordinator_requests)
        # An activation body with a real CSR and an image manifest carrying a wrapped key.
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=w \
            -keyout "$tmp/w.key" -out "$tmp/w.csr" 2>/dev/null
        csr="$(perl -0777 -pe 's/\n/\\n/g' "$tmp/w.csr")"
        image='{"schemaVersion":2,"layers":[{"digest":"sha256:'"$(printf '%064d' 0)"'","annotations":{"org.opencontainers.image.enc.keys.provider.confidant":"eyJ2ZXJzaW9uIjoxfQ=="}}]}'
        printf '{"workload":"web","nonce":"%s","csr":"%s","evidence":{"tee":"sim","evidence":"%s"},"image_manifest":"%s"}' \
            "$(printf '%064d' 7)" "$csr" "$(b64 <"$tmp/sim.bin")" "$(printf '%s' "$image" | b64)" >"$tmp/activate.json"
        put "$t" activate.json "$tmp/activate.json"
        put "$t" csr.pem "$tmp/w.csr"
        printf '%s' "$image" >"$tmp/image.json"
        put "$t" image.json "$tmp/image.json"
        ;;
    kube_generate)
        # The generate corpus (real-world-shaped YAML) and its golden outputs, which carry
        # policy annotations for the read-back path.
        for f in "$here"/../crates/confidant-kube/tests/corpus/*.yaml; do
            put "$t" "$(basename "$f")" "$f"
        done
        for f in "$here"/../crates/confidant-kube/tests/golden/coco-snp/*.yaml; do
            put "$t" "golden-$(basename "$f")" "$f"
        done
        ;;
    *)
        echo "seed.sh: no seeds for $t (it starts from an empty corpus)"
        ;;
    esac
done
echo "seeded: ${targets[*]} (in $corpus)"
