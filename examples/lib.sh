# Helpers the examples' build-image.sh scripts source: make a small OCI image (layout) from
# programs of installed Debian packages, with umoci. The app is not modified: the binary and the
# shared libraries it loads are copied as Debian ships them.
#
#   image_begin OUT_LAYOUT      # a fresh layout with an empty image `latest`; sets $ROOTFS
#   add_binary /usr/bin/prog    # the program and every library `ldd` lists, at the same paths
#   add_user NAME UID GID HOME  # /etc/passwd and /etc/group entries
#   image_end umoci-config-flags…   # one layer with $ROOTFS, then `umoci config` with the flags
set -euo pipefail

image_begin() {
  LAYOUT=$1
  WORKDIR=$(mktemp -d)
  rm -rf "$LAYOUT"
  umoci init --layout "$LAYOUT" >/dev/null
  umoci new --image "$LAYOUT:latest" >/dev/null
  umoci unpack --image "$LAYOUT:latest" "$WORKDIR/bundle" >/dev/null
  ROOTFS="$WORKDIR/bundle/rootfs"
  mkdir -p "$ROOTFS"/{etc,tmp,var/run,run,dev,proc,sys}
  chmod 1777 "$ROOTFS/tmp"
  printf 'root:x:0:0:root:/root:/bin/false\n' >"$ROOTFS/etc/passwd"
  printf 'root:x:0:\n' >"$ROOTFS/etc/group"
  printf 'hosts: files\n' >"$ROOTFS/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n' >"$ROOTFS/etc/hosts"
}

copy_path() { # copy_path FILE: FILE (following links) to the same path in the rootfs
  mkdir -p "$ROOTFS$(dirname "$1")"
  cp -L "$1" "$ROOTFS$1"
}

add_binary() {
  local bin=$1 lib
  copy_path "$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*' | sort -u); do
    [ -e "$ROOTFS$lib" ] || copy_path "$lib"
  done
}

add_user() { # add_user NAME UID GID HOME
  printf '%s:x:%s:%s::%s:/bin/false\n' "$1" "$2" "$3" "$4" >>"$ROOTFS/etc/passwd"
  printf '%s:x:%s:\n' "$1" "$3" >>"$ROOTFS/etc/group"
  mkdir -p "$ROOTFS$4"
  chown "$2:$3" "$ROOTFS$4"
}

image_end() {
  umoci repack --image "$LAYOUT:latest" "$WORKDIR/bundle" >/dev/null
  umoci config --image "$LAYOUT:latest" "$@" >/dev/null
  umoci gc --layout "$LAYOUT"
  rm -rf "$WORKDIR"
}
