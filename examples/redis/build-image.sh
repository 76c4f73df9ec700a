#!/usr/bin/env bash
# Builds examples/redis's plain OCI image from Debian's redis-server: the unmodified
# /usr/bin/redis-server with its libraries, a `redis` user, a default config. Usage:
#   examples/redis/build-image.sh OUT_LAYOUT        (then `confidant image encrypt …`)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../lib.sh"
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }

image_begin "$1"
add_binary /usr/bin/redis-server
add_user redis 999 999 /data
mkdir -p "$ROOTFS/etc/redis"
# The image's own default: loopback only, no persistence. The manifest replaces this file.
printf 'bind 127.0.0.1\nport 6379\nprotected-mode yes\ndir /data\nsave ""\n' >"$ROOTFS/etc/redis/redis.conf"
image_end --config.entrypoint /usr/bin/redis-server --config.cmd /etc/redis/redis.conf \
  --config.user redis --config.workingdir /data
echo "built $1:latest"
