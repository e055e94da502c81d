#!/usr/bin/env python3
"""A small stand-in for an event team's website API and chat webhook, for the demo run.

It is a real HTTP server on 127.0.0.1 (Python standard library only): PUT stores a page,
GET returns it, DELETE removes it, POST records a webhook delivery. Every request is logged
to stderr so the demo shows what eventflow did to the outside world. The first line on
stdout is the port it listens on.

    python3 examples/event_site.py [--port N]
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = {}
DELIVERIES = []


class Site(BaseHTTPRequestHandler):
    def _body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in PAGES:
            self._reply(200, PAGES[self.path])
        else:
            self._reply(404, {"error": "no such page", "path": self.path})

    def do_PUT(self):
        existed = self.path in PAGES
        PAGES[self.path] = self._body()
        self._reply(200 if existed else 201, {"published": True, "path": self.path})

    def do_DELETE(self):
        removed = PAGES.pop(self.path, None) is not None
        self._reply(200, {"unpublished": removed, "path": self.path})

    def do_POST(self):
        DELIVERIES.append({"path": self.path, "body": self._body()})
        self._reply(202, {"accepted": True, "delivery": len(DELIVERIES)})

    def log_message(self, fmt, *args):
        sys.stderr.write("  [site] %s\n" % (fmt % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Site)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
