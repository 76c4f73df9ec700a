# The steps every examples/<app>/try.sh shares, on one machine with the SIMULATION TEE. Source it
# after setting `here` (the example's directory); then, in order:
#
#   try_begin WORKLOAD     # $B (the binary), $W (a work dir, kept after a failure or with KEEP=1),
#                          # say, fail, an exit trap stopping what was started, run_mounts
#   try_coordinator        # a coordinator, verified; $ADDR, $W/root.pem, $W/coord-image.pub, $M
#   try_image              # build-image.sh, encrypted for the coordinator; $DIGEST, $CID
#   try_manifest           # the operator's certificate, manifest.yaml filled in and set; ${ops[@]}
#   try_run                # `confidant run` in the background; $RPID, $before (run_mounts)
#   try_client_cert SECRET # the client certificate SECRET from the coordinator: client.{crt,key}

try_begin() {
  WORKLOAD=$1
  B=${CONFIDANT_BIN:-$here/../../target/debug/confidant}
  W=$(mktemp -d "${TMPDIR:-/tmp}/confidant-$WORKLOAD.XXXXXX")
  export CONFIDANT_HOME=$W/home
  CPID= RPID= ok=
  trap try_cleanup EXIT
}

say() { printf '== %s\n' "$*"; }
fail() { printf 'try.sh: FAIL: %s (logs in %s)\n' "$*" "$W" >&2; exit 1; }

try_cleanup() {
  if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then kill -TERM "$RPID"; wait "$RPID" || true; fi
  if [ -n "$CPID" ]; then kill "$CPID" 2>/dev/null || true; wait "$CPID" 2>/dev/null || true; fi
  # Kept after a failure, or with KEEP=1: logs, keys, images.
  if [ -n "$ok" ] && [ -z "${KEEP:-}" ]; then rm -rf "$W"; fi
}

# This workload's run directories (confidant-WORKLOAD-XXXXXXXX) mounted under /run/confidant.
run_mounts() { grep -o " /run/confidant/confidant-$WORKLOAD-[^ ]*" /proc/self/mounts | sort || true; }

try_coordinator() {
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
}

try_image() {
  say "image: build, encrypt for the coordinator"
  "$here/build-image.sh" "$W/plain" >/dev/null
  "$B" image encrypt --coordinator-key "$W/coord-image.pub" "oci:$W/plain:latest" "oci:$W/enc:latest" >/dev/null
  DIGEST=$("$B" -o json image inspect "oci:$W/enc:latest" | jq -r .digest)
  CID=$("$B" attest sim config-id --image-digest "$DIGEST" --workload "$WORKLOAD")
}

try_manifest() {
  say "manifest"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=ops \
    -keyout "$W/ops.key" -out "$W/ops.crt" 2>/dev/null
  export MEASUREMENT=$M CONFIG_ID=$CID IMAGE_DIGEST=$DIGEST OPS_CERT="$(sed 's/^/      /' "$W/ops.crt")"
  envsubst <"$here/manifest.yaml" >"$W/manifest.yaml"
  "$B" manifest set --coordinator "$ADDR" "$W/manifest.yaml" >/dev/null
  ops=(--coordinator "$ADDR" --cert "$W/ops.crt" --key "$W/ops.key")
}

try_run() {
  say "confidant run"
  before=$(run_mounts)
  "$B" run --coordinator "$ADDR" --workload "$WORKLOAD" --tee sim "oci:$W/enc:latest" >"$W/run.out" 2>"$W/run.err" &
  RPID=$!
}

try_client_cert() {
  "$B" -o json secret get "${ops[@]}" "$1" >"$W/client.json"
  jq -r .cert "$W/client.json" >"$W/client.crt"
  jq -r .key "$W/client.json" >"$W/client.key"
}
