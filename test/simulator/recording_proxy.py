#!/usr/bin/python3
"""A forward proxy for the tests that records what passes through it.

It opens CONNECT tunnels (how a client reaches an https server through a
proxy: the proxy sees the target's host and port, then only encrypted
bytes) and forwards plain-HTTP requests in absolute form (the proxy sees
everything, the Authorization header included). Each one is logged; a test
reads the log at GET /_proxy/log (DELETE clears it) to prove where a
request went and what the proxy could read.

    recording_proxy.py [--bind ADDR] [--port N] [--refuse-connect | --hang-connect]
    # listening on http://127.0.0.1:PORT      <- the only line it prints

--refuse-connect answers 403 to every CONNECT, as a proxy does for a
target it does not allow. --hang-connect never answers a CONNECT (a proxy
whose target drops every packet): the client's connect timeout decides.
Standard library only, like the simulator.
"""

import argparse
import http.client
import http.server
import json
import select
import signal
import socket
import sys
import threading
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection",
              "te", "trailer", "transfer-encoding", "upgrade"}


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []

    def add(self, **entry):
        with self.lock:
            self.entries.append(entry)
        return entry

    def update(self, entry, **fields):
        with self.lock:
            entry.update(fields)

    def json(self):
        with self.lock:
            return json.dumps(self.entries).encode()

    def clear(self):
        with self.lock:
            self.entries.clear()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format, *args):
        pass

    def answer(self, code, body=b"", content_type="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self):
        log = self.server.log
        entry = log.add(method="CONNECT", target=self.path, code=None,
                        authorization=self.headers.get("Authorization"),
                        proxy_authorization=self.headers.get("Proxy-Authorization"),
                        bytes_to_server=0, bytes_to_client=0)
        host, _, port = self.path.rpartition(":")
        if self.server.refuse_connect:
            log.update(entry, code=403)
            self.close_connection = True
            return self.answer(403, b"tunnel refused\n")
        if self.server.hang_connect:
            # Holds the connection, silent, until the client gives up.
            self.close_connection = True
            self.connection.settimeout(None)
            self.rfile.read(1)
            return None
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            log.update(entry, code=502)
            self.close_connection = True
            return self.answer(502, b"cannot reach the target\n")
        log.update(entry, code=200)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.relay(upstream, entry)
        self.close_connection = True

    def relay(self, upstream, entry):
        """Copy bytes both ways until either side closes."""
        client = self.connection
        sent = {client: "bytes_to_server", upstream: "bytes_to_client"}
        other = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], self.timeout)
                if not readable:
                    return
                for side in readable:
                    data = side.recv(65536)
                    if not data:
                        return
                    other[side].sendall(data)
                    self.server.log.update(entry, **{sent[side]: entry[sent[side]] + len(data)})
        except OSError:
            return
        finally:
            upstream.close()

    def forward(self):
        if self.path.startswith("/_proxy/log"):
            if self.command == "DELETE":
                self.server.log.clear()
            return self.answer(200, self.server.log.json(), "application/json")
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        entry = self.server.log.add(method=self.command, target=self.path, code=None,
                                    authorization=self.headers.get("Authorization"),
                                    proxy_authorization=self.headers.get("Proxy-Authorization"))
        if url.scheme != "http" or not url.hostname:
            self.server.log.update(entry, code=400)
            return self.answer(400, b"absolute http URL expected\n")
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in HOP_BY_HOP}
        try:
            connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
            connection.request(self.command, urllib.parse.urlunsplit(
                ("", "", url.path or "/", url.query, "")), body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError:
            self.server.log.update(entry, code=502)
            return self.answer(502, b"cannot reach the target\n")
        self.server.log.update(entry, code=response.status)
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        connection.close()

    do_GET = do_PUT = do_DELETE = do_POST = do_HEAD = forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    tunnel = parser.add_mutually_exclusive_group()
    tunnel.add_argument("--refuse-connect", action="store_true")
    tunnel.add_argument("--hang-connect", action="store_true")
    options = parser.parse_args(argv)
    server = Server((options.bind, options.port), Handler)
    server.log = Log()
    server.refuse_connect = options.refuse_connect
    server.hang_connect = options.hang_connect
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
