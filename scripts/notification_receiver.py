#!/usr/bin/python3
"""The application side of registry notifications, as a deployment has it.

The registry reports the end of each import step with
    PUT <notification URL>/<repository path>
    Authorization: <shared secret>
    {"name": ..., "path": ..., "status": ..., "detail": ...}
and the receiving application calls registry_migration.handle_notification.
This small receiver does exactly that for the demo: it checks the secret,
answers at once, and passes each notification to one psql session.

    notification_receiver.py --secret S --port-file F   (libpq PG* variables select the database)
"""
import argparse
import json
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Database:
    """One psql session fed through its standard input, one statement a line.
    A session that ended (the server restarted, say) is replaced, so one
    lost connection does not lose every later notification."""

    def __init__(self, log):
        self.lock = threading.Lock()
        self.log = log
        self.psql = None

    def session(self):
        if self.psql is None or self.psql.poll() is not None:
            self.psql = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=0"],
                                         stdin=subprocess.PIPE, stdout=self.log,
                                         stderr=self.log, text=True)
        return self.psql

    @staticmethod
    def literal(value):
        return "'" + value.replace("'", "''") + "'"

    def notify(self, path, status):
        statement = "SELECT registry_migration.handle_notification(%s, %s);\n" % (
            self.literal(path), self.literal(status))
        with self.lock:
            for _ in range(2):
                try:
                    psql = self.session()
                    psql.stdin.write(statement)
                    psql.stdin.flush()
                    return
                except BrokenPipeError:
                    self.psql = None


def handler_for(secret, prefix, database):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.headers.get("Authorization") != secret:
                return self.answer(401)
            if not self.path.startswith(prefix):
                return self.answer(404)
            try:
                status = json.loads(body)["status"]
            except (ValueError, KeyError, TypeError):
                return self.answer(400)
            database.notify(urllib.parse.unquote(self.path[len(prefix):]), status)
            self.answer(200)

        def answer(self, code):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--prefix", default="/notify/")
    parser.add_argument("--log", default="/dev/null")
    args = parser.parse_args()
    with open(args.log, "a") as log:
        database = Database(log)
        server = ThreadingHTTPServer(("127.0.0.1", 0),
                                     handler_for(args.secret, args.prefix, database))
        with open(args.port_file, "w") as f:
            f.write(str(server.server_address[1]))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
