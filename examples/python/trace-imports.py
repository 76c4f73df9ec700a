"""Lists the standard-library files an app needs, for examples/python/build-image.sh.

Usage: python3 trace-imports.py APP.py
Runs APP.py once on this host (LISTEN=127.0.0.1:<free port>, under `-X importtime`), sends it
a few requests, stops it with SIGTERM, and prints one path a line: every stdlib module it imported
(package directories as their imported modules plus `__init__.py`), the extension modules in
lib-dynload, the whole `encodings` package (any codec can be asked for by name at run time), and
the modules a traceback needs. Run it with the Python the image copies (/usr/bin/python3).
"""

import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time

STDLIB = sysconfig.get_paths()["stdlib"]  # /usr/lib/python3.11
# Imported by `site` on this host only (Debian's sitecustomize, pip's hooks): not the app's.
SKIP = {"sitecustomize", "usercustomize", "apport_python_hook"}
# Imported lazily when an exception is printed, which the trace may not see.
EXTRA = ["traceback", "linecache", "tokenize", "token", "encodings"]


def trace(app):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, LISTEN=f"127.0.0.1:{port}", GREETING="trace", WORKLOAD="trace")
    p = subprocess.Popen(
        [sys.executable, "-X", "importtime", app],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                for path in ("/", "/missing"):
                    c.request("GET", path)
                    c.getresponse().read()
                c.close()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        else:
            sys.exit(f"trace-imports: {app} did not listen on port {port}")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    names = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.split("|")[-1].strip()
            if name != "imported package":
                names.append(name)
    return names


def files(name):
    """The stdlib files module `name` needs: its own and its parents' `__init__.py`."""
    out = []
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:i]))
        except (ImportError, ValueError):
            return []
        if spec is None:
            return []
        origin = spec.origin
        if origin == "frozen":  # frozen into the binary; the source only for tracebacks
            origin = os.path.join(STDLIB, *parts[:i]) + ".py"
            if not os.path.exists(origin):
                origin = os.path.join(STDLIB, *parts[:i], "__init__.py")
        if not origin or not origin.startswith(STDLIB + "/") or "-packages/" in origin:
            return []  # built in, or not the standard library
        out.append(origin)
    return out


def main():
    app = sys.argv[1]
    names = [n for n in trace(app) if n.split(".")[0] not in SKIP]
    paths = {os.path.join(STDLIB, "os.py")}  # the landmark Python finds its prefix by
    for n in names + EXTRA:
        paths.update(files(n))
    enc = os.path.join(STDLIB, "encodings")
    paths.update(os.path.join(enc, f) for f in os.listdir(enc) if f.endswith(".py"))
    print("\n".join(sorted(p for p in paths if os.path.isfile(p))))


if __name__ == "__main__":
    main()
