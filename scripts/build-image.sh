#!/usr/bin/env bash
# Builds Confidant's own OCI image (one image for the coordinator, the init container and the mesh
# sidecar) from a `confidant` binary, as an OCI image layout. No Docker daemon, no registry.
#
#   scripts/build-image.sh BIN OUT_DIR [TAG]      (TAG defaults to the binary's version)
#
# The image holds exactly: BIN at /usr/bin/confidant, the shared libraries `ldd BIN` lists and the
# loader (at the paths ldd prints), /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group
# with root and `nonroot` (65532:65532), /etc/nsswitch.conf, /tmp (1777), /home/nonroot and
# /var/lib/confidant (the state directory, CONFIDANT_HOME) owned by 65532. It runs as 65532 with
# Entrypoint ["/usr/bin/confidant"].
#
# Reproducible: the same inputs (the binary, the libraries, the CA bundle, the version, the
# revision and the timestamp) give the same bytes and so the same manifest digest. The layer is a
# ustar archive written entry by entry (names sorted, every mtime the timestamp, numeric owners,
# no uname/gname, no atime/ctime, no pax headers) compressed with `gzip -n`; the JSON documents
# have no whitespace, the config sorted keys, the manifest the spec's key order (the order
# `confidant image push` writes it in, so that the digest in the registry is this one).
#
# Inputs from the environment, each with its default:
#   SOURCE_DATE_EPOCH           the commit time of the checkout's HEAD (git log -1 --format=%ct)
#   CONFIDANT_IMAGE_REVISION    the checkout's HEAD commit (git rev-parse HEAD)
#   CONFIDANT_IMAGE_SOURCE      the workspace's `repository` (Cargo.toml)
#
# Prints the manifest digest (sha256:…) on stdout; OUT_DIR is replaced whole, and only when it is
# absent, empty, or an OCI layout already.
set -euo pipefail

usage() { echo "usage: $0 BIN OUT_DIR [TAG]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
bin=$1
out=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

[ -f "$bin" ] && [ -x "$bin" ] || { echo "$bin: not an executable file" >&2; exit 2; }
[ -f /etc/ssl/certs/ca-certificates.crt ] ||
  { echo "needs /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 2; }

version="$("$bin" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "$bin --version printed no version" >&2; exit 2; }
tag=${3:-$version}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
revision=${CONFIDANT_IMAGE_REVISION:-$(git -C "$repo" rev-parse HEAD)}
source=${CONFIDANT_IMAGE_SOURCE:-$(sed -n 's/^repository *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)}
license=$(sed -n 's/^license *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)

# The libraries the dynamic loader maps: "name => /path (addr)" and the loader "/path (addr)".
# A static binary has none (ldd says "not a dynamic executable" and fails).
if ldd_out=$(ldd "$bin" 2>&1); then
  if grep -q 'not found' <<<"$ldd_out"; then
    echo "ldd $bin: a library is missing:" >&2
    echo "$ldd_out" >&2
    exit 2
  fi
  libs=$(grep -o '/[^ ]*' <<<"$ldd_out" | sort -u)
else
  grep -q 'not a dynamic executable' <<<"$ldd_out" ||
    { echo "ldd $bin failed: $ldd_out" >&2; exit 2; }
  libs=""
fi

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/oci-layout" ]; then
  echo "$out exists and is not an OCI layout: refusing to replace it" >&2
  exit 2
fi
staging="$out.tmp.$$"
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
mkdir -p "$staging"

python3 - "$bin" "$staging" "$tag" "$epoch" "$version" "$revision" "$source" "$license" $libs <<'PY'
import datetime, gzip, hashlib, io, json, os, shutil, subprocess, sys, tarfile

bin_path, out, tag, epoch, version, revision, source, license = sys.argv[1:9]
libs = sys.argv[9:]
epoch = int(epoch)
created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
USER = 65532

# The ELF machine of the binary names the image's architecture.
with open(bin_path, "rb") as f:
    head = f.read(20)
if head[:4] != b"\x7fELF":
    sys.exit(f"{bin_path}: not an ELF binary")
machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
arch = {0x3E: "amd64", 0xB7: "arm64", 0xF3: "riscv64", 0x16: "s390x", 0x15: "ppc64le"}.get(machine)
if arch is None:
    sys.exit(f"{bin_path}: unknown ELF machine {machine:#x}")

# path in the image -> (kind, mode, uid, bytes or source file)
entries = {}
def directory(path, mode=0o755, owner=0):
    entries[path] = ("dir", mode, owner, None)
def text(path, content, mode=0o644):
    entries[path] = ("file", mode, 0, content.encode())
def copy(path, src):
    mode = 0o755 if os.stat(src).st_mode & 0o111 else 0o644
    entries[path] = ("file", mode, 0, src)

copy("usr/bin/confidant", bin_path)
for lib in libs:
    copy(lib.lstrip("/"), lib)  # the file a symlink points to, at the path ldd printed
copy("etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
text("etc/passwd",
     "root:x:0:0:root:/root:/usr/sbin/nologin\n"
     f"nonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/usr/sbin/nologin\n")
text("etc/group", f"root:x:0:\nnonroot:x:{USER}:\n")
text("etc/nsswitch.conf", "hosts: files dns\n")
directory("tmp", 0o1777)
directory("home/nonroot", 0o700, USER)
directory("var/lib/confidant", 0o700, USER)
# Every parent directory, root-owned.
for path in list(entries):
    parent = os.path.dirname(path)
    while parent and parent not in entries:
        directory(parent)
        parent = os.path.dirname(parent)

# The layer: ustar (no pax headers), entries sorted by name, every field fixed.
layer_tar = os.path.join(out, "layer.tar")
with open(layer_tar, "wb") as raw:
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(entries):
            kind, mode, owner, content = entries[path]
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.uname, info.gname = mode, owner, owner, "", ""
            info.mtime = epoch
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.size = os.stat(content).st_size
                with open(content, "rb") as f:
                    tar.addfile(info, f)

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()

blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put_file(path):
    digest = sha256_file(path)
    size = os.path.getsize(path)
    os.rename(path, os.path.join(blobs, digest.split(":")[1]))
    return digest, size
def put_json(obj, sort_keys=True):
    data = json.dumps(obj, sort_keys=sort_keys, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest.split(":")[1]), "wb") as f:
        f.write(data)
    return digest, len(data)

diff_id = sha256_file(layer_tar)
with open(layer_tar + ".gz", "wb") as gz:
    subprocess.run(["gzip", "-n", "-c", layer_tar], stdout=gz, check=True)
os.remove(layer_tar)
layer_digest, layer_size = put_file(layer_tar + ".gz")

labels = {
    "org.opencontainers.image.created": created,
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.source": source,
    "org.opencontainers.image.title": "confidant",
    "org.opencontainers.image.version": version,
}
if license:
    labels["org.opencontainers.image.licenses"] = license
config = {
    "architecture": arch,
    "os": "linux",
    "created": created,
    "config": {
        "User": f"{USER}:{USER}",
        "Entrypoint": ["/usr/bin/confidant"],
        "Env": ["PATH=/usr/bin:/bin", "CONFIDANT_HOME=/var/lib/confidant"],
        "WorkingDir": "/",
        "Labels": labels,
    },
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": created, "created_by": "scripts/build-image.sh"}],
}
config_digest, config_size = put_json(config)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest, "size": layer_size}],
}
# The manifest's keys in the order of the OCI spec (and of oci-spec, which `confidant image push`
# serializes it with): the pushed manifest then has the same bytes, so the same digest.
manifest_digest, manifest_size = put_json(manifest, sort_keys=False)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }],
}
def write(name, obj):
    with open(os.path.join(out, name), "w") as f:
        f.write(json.dumps(obj, sort_keys=True, separators=(",", ":")))
write("index.json", index)
write("oci-layout", {"imageLayoutVersion": "1.0.0"})
print(manifest_digest)
PY

rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "built oci:$out:$tag" >&2
