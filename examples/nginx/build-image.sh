#!/usr/bin/env bash
# Builds examples/nginx's plain OCI image from Debian's nginx (nginx-light): the unmodified
# /usr/sbin/nginx with its libraries, /etc/nginx/mime.types, a small nginx.conf, a static page,
# and the `www-data` user nginx runs as (master and worker: it needs no root on port 8080).
# Usage: examples/nginx/build-image.sh OUT_LAYOUT        (then `confidant image encrypt …`)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../lib.sh"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 2; }

image_begin "$1"
add_binary /usr/sbin/nginx
add_user www-data 33 33 /var/www
copy_path /etc/nginx/mime.types
# What nginx writes as an unprivileged user: its temp paths (compiled in as /var/lib/nginx/*),
# its pid file, its logs. All of it is in the run's memory-backed file system.
mkdir -p "$ROOTFS"/var/lib/nginx "$ROOTFS"/var/log/nginx "$ROOTFS"/run/nginx
chown 33:33 "$ROOTFS"/var/lib/nginx "$ROOTFS"/var/log/nginx "$ROOTFS"/run/nginx
cat >"$ROOTFS/etc/nginx/nginx.conf" <<'CONF'
# In the foreground, logging to stderr (confidant run passes it on); plain HTTP on loopback only:
# clients come in through the mesh proxy's mutual-TLS port.
daemon off;
worker_processes 1;
pid /run/nginx/nginx.pid;
error_log stderr notice;
events {
    worker_connections 256;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    server_tokens off;
    server {
        listen 127.0.0.1:8080;
        server_name _;
        root /usr/share/nginx/html;
        index index.html;
    }
}
CONF
mkdir -p "$ROOTFS/usr/share/nginx/html"
cat >"$ROOTFS/usr/share/nginx/html/index.html" <<'HTML'
<!doctype html>
<html>
<head><title>Confidant nginx example</title></head>
<body>
<h1>Hello from an encrypted image</h1>
<p>This page is part of the image. <a href="secret.html">secret.html</a> is rendered by the
coordinator from the manifest at activation.</p>
</body>
</html>
HTML
image_end --config.entrypoint /usr/sbin/nginx --config.cmd=-c --config.cmd=/etc/nginx/nginx.conf \
  --config.user www-data --config.workingdir /var/www
echo "built $1:latest"
