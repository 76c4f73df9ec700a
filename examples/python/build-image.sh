#!/usr/bin/env bash
# Builds examples/python's plain OCI image: Debian's unmodified /usr/bin/python3.11 with its
# libraries, the part of its standard library the app imports (traced by running the app once on
# this host, see trace-imports.py), the app itself (app/app.py, which exists nowhere else in the
# image's encrypted form), and an `app` user it runs as. Usage:
#   examples/python/build-image.sh OUT_LAYOUT        (then `confidant image encrypt …`)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../lib.sh"
PY=/usr/bin/python3.11
[ -x $PY ] || { echo "needs Debian's $PY (apt-get install python3.11)" >&2; exit 2; }

files=$($PY "$here/trace-imports.py" "$here/app/app.py")
image_begin "$1"
add_binary $PY
ln -s python3.11 "$ROOTFS/usr/bin/python3"
mkdir -p "$ROOTFS/usr/lib/python3.11/lib-dynload" # with os.py, how Python finds its prefix
for f in $files; do
  case $f in
    *.so) add_binary "$f" ;; # an extension module: its libraries too
    *) copy_path "$f" ;;
  esac
done
add_user app 10001 10001 /home/app
mkdir -p "$ROOTFS/app"
cp "$here/app/app.py" "$ROOTFS/app/app.py"
chmod 0644 "$ROOTFS/app/app.py"
image_end --config.entrypoint /usr/bin/python3 --config.cmd=-u --config.cmd=/app/app.py \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env LISTEN=127.0.0.1:8000 \
  --config.user app --config.workingdir /home/app
echo "built $1:latest"
