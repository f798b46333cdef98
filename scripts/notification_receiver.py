#!/usr/bin/python3
"""Receives the registry's import notifications and hands them to PostgreSQL.

The registry reports the end of each import step with
    PUT <notification URL with the repository path>
    Authorization: <shared secret>
    {"name": ..., "path": ..., "status": ..., "detail": ...}
and does not retry a failed delivery. This service checks the secret (in
constant time), the method, the URL and the body size, and calls
registry_migration.handle_notification(path, status) through a small pool of
database connections. While the database cannot be reached it keeps the
notification and tries again for a short while (--retry-seconds) before it
answers 503; the extension's own refusals are final and are never retried.
GET /health answers whether the database answers. Every request is logged as
one JSON line.

The secret comes from --secret-file or the environment variable
REGISTRY_NOTIFICATION_SECRET, never from the command line (which every user
sees in ps). libpq's PG* variables (or --dsn) select the database.

Only the standard library and python3-psycopg2 (Debian) are needed.
"""
import argparse
import contextlib
import datetime
import hmac
import json
import os
import random
import re
import signal
import socket
import stat
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

import psycopg2

SECRET_ENVIRONMENT = "REGISTRY_NOTIFICATION_SECRET"
SECRET_FILE_LIMIT = 4096
APPLICATION_NAME = "registry_notification_receiver"
HANDLE = "SELECT registry_migration.handle_notification(%s, %s)"

# The extension's refusals: the same notification would be refused again, so
# they are answered at once and never retried.
REFUSALS = {
    "55000": (409, "refused"),              # not allowed in the repository's state
    "P0002": (404, "unknown_repository"),   # no repository has this path
    "22023": (400, "invalid"),              # a status or path the extension does not accept
    "22004": (400, "invalid"),              # a NULL argument
}
# Errors after which the same call can succeed a moment later.
TRANSIENT_CODES = {
    "40001", "40P01",           # serialization failure, deadlock: rolled back, run it again
    "55P03", "57014",           # lock not available, statement timeout or cancel
    "57P01", "57P02", "57P03",  # the server shuts down, crashed, or is starting up
    "25006",                    # a read-only server: a standby, perhaps promoted after a failover
}
TRANSIENT_CLASSES = {"08", "53"}   # connection exceptions, insufficient resources
# After these the session is useless (or, on a standby, the wrong one); after
# any other error the server answered, it is still good.
SESSION_LOST_CODES = {"57P01", "57P02", "57P03", "25006"}


# ---- logging -------------------------------------------------------------------

class JsonLog:
    """One JSON object a line, written whole under a lock."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, **fields):
        line = json.dumps(dict(time=now_iso(), **fields), separators=(",", ":"))
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


# ---- the database --------------------------------------------------------------

class NotHandled(Exception):
    """The call failed: for good (a refusal or another error), or because the
    database stayed unreachable for the whole retry window (gave_up)."""

    def __init__(self, error, attempts, gave_up):
        super().__init__(error)
        self.error = error
        self.attempts = attempts
        self.gave_up = gave_up


class Pool:
    """At most `size` connections, opened when first needed and closed when
    they fail, so a restarted server is reconnected to transparently. A
    caller waits for a free slot at most until its own deadline."""

    def __init__(self, dsn, size, connect_timeout):
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.slots = threading.BoundedSemaphore(size)
        self.idle = []
        self.lock = threading.Lock()

    def connect(self):
        connection = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout,
                                      fallback_application_name=APPLICATION_NAME)
        connection.autocommit = True
        return connection

    @contextlib.contextmanager
    def connection(self, timeout):
        """Yields an open connection; raises TimeoutError when no slot frees
        up in time. A failing caller says whether to drop the connection by
        raising; see release()."""
        if not self.slots.acquire(timeout=max(timeout, 0)):
            raise TimeoutError("every database connection is busy")
        connection = None
        try:
            with self.lock:
                connection = self.idle.pop() if self.idle else None
            if connection is None or connection.closed:
                connection = self.connect()
            yield connection
            self.release(connection, None)
        except BaseException as error:
            self.release(connection, error)
            raise
        finally:
            self.slots.release()

    def release(self, connection, error):
        if connection is None:
            return
        if error is None or not (connection.closed or session_lost(error)):
            with self.lock:
                self.idle.append(connection)
            return
        # A lost connection usually means a lost server: the idle ones are
        # stale too, and each would cost one failed attempt.
        with self.lock:
            stale, self.idle = self.idle + [connection], []
        for each in stale:
            with contextlib.suppress(Exception):
                each.close()

    def close(self):
        with self.lock:
            stale, self.idle = self.idle, []
        for each in stale:
            with contextlib.suppress(Exception):
                each.close()


def sqlstate(error):
    return getattr(error, "pgcode", None)


def session_lost(error):
    code = sqlstate(error)
    return code is None or code[:2] == "08" or code in SESSION_LOST_CODES


def is_transient(error):
    """True when the same call may succeed once the database is back."""
    if isinstance(error, TimeoutError):
        return True
    if not isinstance(error, psycopg2.Error):
        return False
    code = sqlstate(error)
    if code is None:
        # No answer from the server at all: it refused the connection, is
        # not there, or the connection broke.
        return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
    return code in TRANSIENT_CODES or code[:2] in TRANSIENT_CLASSES


def first_line(error):
    """The server's message without its "ERROR:" prefix, or the driver's."""
    diag = getattr(error, "diag", None)
    text = (diag.message_primary if diag is not None else None) or str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


class Notifications:
    """handle_notification() with the retry while the database is away."""

    def __init__(self, pool, retry_seconds):
        self.pool = pool
        self.retry_seconds = retry_seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.retrying = 0

    def handle(self, path, status):
        """(the repository's state after the call, attempts made, the last
        failure before it or None); raises NotHandled."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        attempts = 0
        waiting = False
        failure = None
        with self.counted("in_flight"):
            try:
                while True:
                    attempts += 1
                    try:
                        with self.pool.connection(deadline - time.monotonic()) as connection:
                            with connection.cursor() as cursor:
                                cursor.execute(HANDLE, (path, status))
                                return cursor.fetchone()[0], attempts, failure
                    except Exception as error:
                        if not is_transient(error):
                            raise NotHandled(error, attempts, gave_up=False) from error
                        failure = error
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise NotHandled(error, attempts, gave_up=True) from error
                        if not waiting:
                            waiting = True
                            self.count("retrying", 1)
                        # Jitter, so that requests queued during an outage
                        # do not all reconnect in the same instant.
                        time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
                        delay = min(delay * 2, 1.0)
            finally:
                if waiting:
                    self.count("retrying", -1)

    def count(self, name, step):
        with self.lock:
            setattr(self, name, getattr(self, name) + step)

    @contextlib.contextmanager
    def counted(self, name):
        self.count(name, 1)
        try:
            yield
        finally:
            self.count(name, -1)

    def snapshot(self):
        with self.lock:
            return {"in_flight": self.in_flight, "retrying": self.retrying}


class Health:
    """SELECT 1 on a connection of its own, so that a pool busy with
    retries does not make a reachable database look down."""

    def __init__(self, dsn, connect_timeout):
        self.pool = Pool(dsn, 1, connect_timeout)

    def database_up(self):
        # A second try on a new connection: the kept one may date from
        # before a restart of a server that is up again.
        for attempt in (1, 2):
            try:
                with self.pool.connection(5) as connection:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT 1")
                        cursor.fetchone()
                return True, None
            except Exception as error:
                failure = first_line(error)
        return False, failure


# ---- HTTP ----------------------------------------------------------------------

class Answer(Exception):
    """Ends a request with an HTTP answer; fields go to the body and the log."""

    def __init__(self, code, outcome, **fields):
        super().__init__(outcome)
        self.code = code
        self.outcome = outcome
        self.fields = fields


class UrlTemplate:
    """The notification URL's path with `{path}` where the repository path
    goes, such as /notify/{path}."""

    def __init__(self, template):
        if template.count("{path}") != 1 or not template.startswith("/"):
            raise ValueError("--url-path must start with / and contain {path} once")
        self.prefix, self.suffix = template.split("{path}")

    def repository(self, url_path):
        """The repository path in url_path (percent-decoded), or None."""
        if not (url_path.startswith(self.prefix) and url_path.endswith(self.suffix)):
            return None
        middle = url_path[len(self.prefix):len(url_path) - len(self.suffix)]
        if not middle:
            return None
        try:
            return urllib.parse.unquote(middle, errors="strict")
        except UnicodeDecodeError:
            raise Answer(400, "invalid", error="the path is not UTF-8") from None


class KeepAlive:
    """The connections kept open between requests, so that a stop closes
    them at once instead of waiting for their clients' next request.

    The idle limit is longer than an HTTP client keeps an idle connection
    (Go's, the registry's, 90 s): the client closes it first. Were the
    receiver first, a notification sent just as its close was on the way
    would be lost, since the registry does not send a PUT twice."""

    def __init__(self, idle_timeout):
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.waiting = set()
        self.stopping = False

    def next_request(self, handler):
        """True once the client has sent the start of its next request; False
        when it closed the connection, sent nothing for idle_timeout, or the
        receiver stops."""
        connection = handler.connection
        with self.lock:
            if self.stopping:
                return False
            self.waiting.add(connection)
        try:
            connection.settimeout(self.idle_timeout)
            arrived = bool(handler.rfile.peek(1))
        except OSError:     # the timeout among them; the stream is unusable then
            return False
        finally:
            with self.lock:
                self.waiting.discard(connection)
        connection.settimeout(handler.timeout)
        return arrived

    def stop(self):
        with self.lock:
            self.stopping = True
            for connection in self.waiting:
                # Wakes the thread reading it with an end of file.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)


class Receiver:
    """What the request handler needs, built once from the options."""

    def __init__(self, secret, template, notifications, health, log, max_body, request_timeout,
                 idle_timeout):
        self.secret = secret
        self.template = template
        self.notifications = notifications
        self.health = health
        self.log = log
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.keep_alive = KeepAlive(idle_timeout)


def handler_for(receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "registry-notification-receiver"
        sys_version = ""
        timeout = receiver.request_timeout   # a client that stalls is dropped
        # An answer is written as its head, then its body: with Nagle's
        # algorithm, the body of the second answer on a kept connection would
        # wait for the client's delayed acknowledgement of the head (~40 ms).
        disable_nagle_algorithm = True

        def handle(self):
            # The registry sends its notifications one after another; a
            # connection (and a thread) each cost more than handling one, so
            # HTTP/1.1 clients keep theirs until they close it, stay idle
            # for the idle timeout, or the receiver stops.
            self.handle_one_request()
            while not self.close_connection and receiver.keep_alive.next_request(self):
                self.handle_one_request()

        # Every request: route, answer, log one line.
        def serve(self):
            started = time.monotonic()
            self.body_read = False
            entry = {"method": self.command, "path": self.path, "client": self.client_address[0],
                     "sqlstate": None, "attempts": 0}
            try:
                url_path = urllib.parse.urlsplit(self.path).path
                if url_path == "/health":
                    code, outcome, body = self.serve_health(entry)
                else:
                    code, outcome, body = self.serve_notification(url_path, entry)
            except Answer as answer:
                code, outcome = answer.code, answer.outcome
                entry.update(answer.fields)
                body = dict(outcome=outcome, **answer.fields)
            entry.update(status=code, outcome=outcome)
            if not self.answer(code, body):
                entry["client_gone"] = True
            entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            receiver.log.write(**entry)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = serve

        def serve_health(self, entry):
            if self.command not in ("GET", "HEAD"):
                self.allow = "GET, HEAD"
                raise Answer(405, "method_not_allowed")
            up, error = receiver.health.database_up()
            body = dict(database="up" if up else "down", **receiver.notifications.snapshot())
            if error:
                entry["error"] = error
            return (200, "up", body) if up else (503, "down", body)

        def serve_notification(self, url_path, entry):
            repository = receiver.template.repository(url_path)
            if repository is None:
                raise Answer(404, "not_found")
            entry["repository"] = repository
            if self.command != "PUT":
                self.allow = "PUT"
                raise Answer(405, "method_not_allowed")
            self.check_secret()
            status = self.read_notification(repository)
            entry["notification"] = status
            try:
                state, attempts, failure = receiver.notifications.handle(repository, status)
            except NotHandled as failed:
                code = sqlstate(failed.error)
                entry.update(attempts=failed.attempts, sqlstate=code)
                if failed.gave_up:
                    raise Answer(503, "database_unavailable", error=first_line(failed.error)) from None
                status_code, outcome = REFUSALS.get(code, (500, "error"))
                raise Answer(status_code, outcome, sqlstate=code, error=first_line(failed.error)) from None
            entry.update(attempts=attempts, state=state)
            if failure is not None:   # why it took more than one attempt
                entry.update(retried_sqlstate=sqlstate(failure), retried_error=first_line(failure))
            return 200, "handled", {"outcome": "handled", "state": state}

        def check_secret(self):
            given = self.headers.get("Authorization")
            # compare_digest takes as long whatever the first differing byte.
            if given is None or not hmac.compare_digest(given.encode("latin-1", "replace"),
                                                        receiver.secret):
                raise Answer(401, "unauthorized")

        def read_notification(self, repository):
            if self.headers.get("Transfer-Encoding") or not self.headers.get_all("Content-Length"):
                raise Answer(411, "length_required")
            length = self.declared_length()
            if length is None:
                raise Answer(400, "invalid", error="bad Content-Length")
            if length > receiver.max_body:
                raise Answer(413, "too_large", limit=receiver.max_body)
            body = self.rfile.read(length)
            self.body_read = True
            if len(body) != length:
                raise Answer(400, "invalid", error="the body ended early")
            try:
                notification = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise Answer(400, "invalid", error="the body is not JSON") from None
            if not isinstance(notification, dict) or not isinstance(notification.get("status"), str):
                raise Answer(400, "invalid", error="the body has no status string")
            if "path" in notification and notification["path"] != repository:
                raise Answer(400, "invalid", error="the body's path is not the URL's")
            return notification["status"]

        def answer(self, code, body):
            """Sends the answer; False when the client had gone."""
            data = json.dumps(body).encode() + b"\n"
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if not self.may_keep_connection():
                    self.send_header("Connection", "close")   # also ends handle()'s loop
                if code == 405:
                    self.send_header("Allow", self.allow)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()
                self.discard_unread()
                return True
            except OSError:
                self.close_connection = True   # the stream may hold half an answer
                return False

        def declared_length(self):
            """The body's length: 0 without a Content-Length; None unless it
            is one header of decimal digits, so that where this request ends,
            and the next one on the connection begins, is never ambiguous."""
            lengths = self.headers.get_all("Content-Length") or ["0"]
            if len(lengths) != 1 or not re.fullmatch(r"[0-9]{1,18}", lengths[0].strip()):
                return None
            return int(lengths[0])

        def may_keep_connection(self):
            """Whether the connection can carry another request: the client
            wants that, the receiver does not stop, and the whole request was
            read (an unread body would be taken for the next request)."""
            if self.close_connection or receiver.keep_alive.stopping:
                return False
            if self.body_read or self.headers.get("Transfer-Encoding"):
                return self.body_read
            return self.declared_length() == 0

        def discard_unread(self):
            """Reads the body of a request refused before its body was read:
            closing a socket with unread data resets the connection, and the
            client could lose the answer. Bounded in size and time."""
            if self.body_read:
                return
            if self.declared_length() == 0 and not self.headers.get("Transfer-Encoding"):
                return
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            left = 4 * receiver.max_body + (1 << 20)
            deadline = time.monotonic() + 2
            with contextlib.suppress(OSError):
                while left > 0 and time.monotonic() < deadline:
                    chunk = self.rfile.read1(min(left, 65536))
                    if not chunk:
                        break
                    left -= len(chunk)

        def log_request(self, code="-", size="-"):
            pass   # serve() logs every request, as JSON

        def log_message(self, format, *args):
            # Requests too malformed to reach serve() (bad request line or headers).
            receiver.log.write(outcome="bad_request", error=format % args,
                               client=self.client_address[0])

    return Handler


class Server(ThreadingMixIn, HTTPServer):
    # Handler threads are waited for at the end, so a stop never drops a
    # notification that is being handled (or retried).
    daemon_threads = False
    block_on_close = True


def server_for(address, port, handler):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server_class = type("Server", (Server,), {"address_family": family})
    return server_class((address, port), handler)


# ---- start-up ------------------------------------------------------------------

class SecretError(Exception):
    pass


def read_secret_file(name):
    """The secret in the file, without its final line end. Warns (does not
    refuse) when other users may read it."""
    try:
        with open(name, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SecretError(f"secret file {name}: not a regular file")
            data = f.read(SECRET_FILE_LIMIT + 1)
    except OSError as error:
        raise SecretError(f"secret file {name}: {error.strerror}") from None
    if len(data) > SECRET_FILE_LIMIT:
        raise SecretError(f"secret file {name}: larger than {SECRET_FILE_LIMIT} bytes")
    if info.st_mode & 0o077:
        print(f"notification_receiver: warning: secret file {name} can be read by other users "
              f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it", file=sys.stderr)
    return data.rstrip(b"\r\n")


def load_secret(secret_file):
    if secret_file:
        secret = read_secret_file(secret_file)
    else:
        secret = os.environb.get(SECRET_ENVIRONMENT.encode())
        if secret is None:
            raise SecretError(f"no secret: give --secret-file FILE or set {SECRET_ENVIRONMENT}")
    # Nothing this process starts inherits it.
    os.environ.pop(SECRET_ENVIRONMENT, None)
    if not secret:
        raise SecretError("the secret is empty")
    if any(byte < 0x20 or byte == 0x7f for byte in secret):
        raise SecretError("the secret contains control characters: it cannot be sent as a header")
    return secret


class RefuseSecretOnCommandLine(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"--secret is not accepted: a command line is visible to every user (ps); "
                     f"use --secret-file FILE or the environment variable {SECRET_ENVIRONMENT}")


def positive(kind):
    def check(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
        return value
    return check


def non_negative(kind):
    def check(text):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value
    return check


def options(argv):
    # allow_abbrev=False: "--secret X" must not pass as an abbreviation of
    # --secret-file (and then show up in an error message).
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    add = parser.add_argument
    add("--listen", default="127.0.0.1", metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)")
    add("--port", type=non_negative(int), default=0,
        help="TCP port (default 0: any free port, see --port-file)")
    add("--port-file", metavar="FILE", help="write the port number here once listening")
    add("--secret-file", metavar="FILE",
        help=f"file holding the shared secret (default: the environment variable {SECRET_ENVIRONMENT})")
    add("--secret", nargs="?", action=RefuseSecretOnCommandLine, help=argparse.SUPPRESS)
    add("--url-path", default="/notify/{path}", metavar="TEMPLATE",
        help="path of the notification URL, {path} standing for the repository (default /notify/{path})")
    add("--dsn", default="", help="libpq connection string (default: the PG* environment variables)")
    add("--pool-size", type=positive(int), default=4, help="database connections at most (default 4)")
    add("--retry-seconds", type=non_negative(float), default=10.0,
        help="how long to retry while the database is unreachable before answering 503 (default 10)")
    add("--connect-timeout", type=positive(int), default=5,
        help="seconds to wait for one database connection (default 5)")
    add("--max-body-bytes", type=positive(int), default=65536,
        help="larger bodies are refused with 413 (default 65536)")
    add("--request-timeout", type=positive(float), default=10.0,
        help="seconds a client may take to send its request (default 10)")
    add("--idle-timeout", type=positive(float), default=120.0,
        help="seconds a kept connection may wait for its next request (default 120)")
    add("--log", metavar="FILE", help="append the JSON request log here (default: standard error)")
    args = parser.parse_args(argv)
    try:
        args.template = UrlTemplate(args.url_path)
    except ValueError as error:
        parser.error(str(error))
    return args


def write_port_file(name, port):
    # Written whole, then renamed: a reader never sees half a number.
    partial = name + ".partial"
    with open(partial, "w") as f:
        f.write(str(port))
    os.replace(partial, name)


def main(argv=None):
    args = options(argv)
    try:
        secret = load_secret(args.secret_file)
    except SecretError as error:
        print(f"notification_receiver: {error}", file=sys.stderr)
        return 2
    stream = open(args.log, "a", buffering=1) if args.log else sys.stderr
    log = JsonLog(stream)
    notifications = Notifications(Pool(args.dsn, args.pool_size, args.connect_timeout),
                                  args.retry_seconds)
    receiver = Receiver(secret, args.template, notifications,
                        Health(args.dsn, args.connect_timeout), log,
                        args.max_body_bytes, args.request_timeout, args.idle_timeout)
    server = server_for(args.listen, args.port, handler_for(receiver))
    address, port = server.server_address[:2]

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return: not from its thread.
        def stop_serving():
            receiver.keep_alive.stop()
            server.shutdown()
        threading.Thread(target=stop_serving, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.port_file:
        write_port_file(args.port_file, port)
    log.write(event="listening", address=address, port=port, url_path=args.url_path,
              retry_seconds=args.retry_seconds, pool_size=args.pool_size)
    server.serve_forever()
    server.server_close()   # waits for the requests in progress
    notifications.pool.close()
    log.write(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
