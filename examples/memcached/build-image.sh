#!/usr/bin/env bash
# Builds examples/memcached's plain OCI image from Debian's memcached: the unmodified
# /usr/bin/memcached with its libraries and a `memcache` user it runs as. Usage:
#   examples/memcached/build-image.sh OUT_LAYOUT        (then `confidant image encrypt …`)
# The image's command listens on 127.0.0.1:11211 only (TCP, no UDP) and turns on memcached's
# ASCII authentication with /etc/memcached/auth, which the image does not contain: the manifest
# renders it from a coordinator secret, so memcached refuses to start without an activation.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../lib.sh"
command -v memcached >/dev/null || { echo "needs memcached (apt-get install memcached)" >&2; exit 2; }

image_begin "$1"
add_binary /usr/bin/memcached
add_user memcache 104 107 /var/lib/memcached
mkdir -p "$ROOTFS/etc/memcached"
image_end --config.entrypoint /usr/bin/memcached \
  --config.cmd=-l --config.cmd=127.0.0.1 --config.cmd=-p --config.cmd=11211 \
  --config.cmd=-U --config.cmd=0 --config.cmd=-m --config.cmd=64 \
  --config.cmd=-Y --config.cmd=/etc/memcached/auth \
  --config.user memcache --config.workingdir /var/lib/memcached
echo "built $1:latest"
