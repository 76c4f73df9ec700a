"""A small HTTP app for the Confidant python example: only the standard library.

GET / answers JSON with a greeting and the workload's name. The greeting is a coordinator
secret: the manifest renders it into the GREETING environment variable at activation, so it is
neither in the image nor on the host's disk. Listens on plain HTTP, 127.0.0.1:8000 by default
(LISTEN=host:port): clients come in through the mesh proxy's mutual-TLS port.
"""

import json
import os
import platform
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "confidant-example"

    def do_GET(self):
        if self.path != "/":
            self.reply(404, {"error": "not found"})
            return
        self.reply(
            200,
            {
                "greeting": os.environ.get("GREETING", "(no GREETING set)"),
                "workload": os.environ.get("WORKLOAD", ""),
                "python": platform.python_version(),
                "uid": os.getuid(),
            },
        )

    def reply(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("app: %s %s\n" % (self.address_string(), fmt % args))


def main():
    host, _, port = os.environ.get("LISTEN", "127.0.0.1:8000").rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    # `confidant run` forwards SIGTERM: stop serving and exit 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("app: listening on http://%s:%s" % (host, port), file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()
    print("app: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
