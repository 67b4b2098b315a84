"""A minimal IMDSv2 emulator for the benchmark: tokens, instance id, AZ."""
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = set()
META = {
    "/latest/meta-data/instance-id": "i-0bench0000000001",
    "/latest/meta-data/placement/availability-zone": "us-east-1a",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if self.path != "/latest/api/token" or not ttl:
            return self._send(400)
        token = secrets.token_hex(16)
        TOKENS.add(token)
        self._send(200, token.encode(), [("X-aws-ec2-metadata-token-ttl-seconds", ttl)])

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") not in TOKENS:
            return self._send(401)
        value = META.get(self.path)
        if value is None:
            return self._send(404)
        self._send(200, value.encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
