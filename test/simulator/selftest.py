#!/usr/bin/python3
"""Self-test of registry_simulator.py: every rule of how the registry
answers, every fault action, tag pagination, token verification, https,
shutdown, and a load run.

Run: /usr/bin/python3 test/simulator/selftest.py   (about 30 s)
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "registry_simulator.py")
PYTHON = "/usr/bin/python3"
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep the source tree clean
import registry_simulator  # noqa: E402  (for the key-loading unit checks)


# ---------------------------------------------------------------------------
# Helpers: the simulator process, a notification receiver, raw HTTP
# ---------------------------------------------------------------------------

class Simulator:
    def __init__(self, *args):
        self.process = subprocess.Popen([PYTHON, SCRIPT, "--port", "0", *args],
                                        stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("listening on http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, target, headers=None, body=None):
        """One request on a fresh connection: (status, headers, body bytes)."""
        connection = self.connection()
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def json_request(self, method, target, headers=None):
        status, headers, body = self.request(method, target, headers)
        return status, headers, json.loads(body) if body else None

    def control(self, method, route, body=None, expect=200):
        payload = None if body is None else json.dumps(body)
        status, _, data = self.request(method, f"/_sim/{route}", body=payload)
        data = json.loads(data)
        if expect is not None and status != expect:
            raise AssertionError(f"{method} /_sim/{route}: {status} {data}")
        return data

    def add(self, *repositories):
        return self.control("POST", "repositories", {"repositories": list(repositories)})

    def start(self, path, import_type="pre", headers=None):
        return self.json_request("PUT", f"/gitlab/v1/import/{path}/?import_type={import_type}",
                                 headers)

    def status(self, path, headers=None):
        return self.json_request("GET", f"/gitlab/v1/import/{path}/", headers)

    def cancel(self, path, force=False, headers=None):
        query = "?force=true" if force else ""
        return self.json_request("DELETE", f"/gitlab/v1/import/{path}/{query}", headers)

    def wait_status(self, path, wanted, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.control("GET", f"repositories/{path}")["status"]
            if status == wanted:
                return status
            time.sleep(0.02)
        raise AssertionError(f"{path}: status {status!r}, wanted {wanted!r}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode


class Receiver:
    """The application side of notifications: records every PUT."""

    def __init__(self):
        self.received = []
        self.connections = 0        # accepted
        self.closed = 0             # ended
        self.close_silently = False  # close each connection after its answer, unannounced
        self.unanswered = set()     # paths whose PUT is read, then its connection closed unanswered
        self.condition = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with receiver.condition:
                    receiver.connections += 1

            def finish(self):
                super().finish()
                with receiver.condition:
                    receiver.closed += 1
                    receiver.condition.notify_all()

            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.condition:
                    receiver.received.append({"path": self.path,
                                              "authorization": self.headers.get("Authorization"),
                                              "body": json.loads(body)})
                    receiver.condition.notify_all()
                if json.loads(body)["path"] in receiver.unanswered:
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.close_connection = receiver.close_silently

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count, timeout=5):
        with self.condition:
            self.condition.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def wait_closed(self, count, timeout=5):
        with self.condition:
            self.condition.wait_for(lambda: self.closed >= count, timeout)

    def clear(self):
        with self.condition:
            self.received.clear()
            self.connections = self.closed = 0

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def raw_exchange(port, request, timeout=5):
    """Send raw bytes, read until the peer closes: (bytes, seconds, closed)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks), time.monotonic() - started, True
                chunks.append(chunk)
        except socket.timeout:
            return b"".join(chunks), time.monotonic() - started, False


def raw_get(path):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def errors_code(body):
    return body["errors"][0]["code"]


# ---------------------------------------------------------------------------
# How the registry answers
# ---------------------------------------------------------------------------

class RegistryBehaviour(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        cls.sim = Simulator("--pre-import-seconds", "0.2", "--import-seconds", "0.1",
                            "--max-imports", "3", "--cancel-cooldown", "0.6",
                            "--retry-after", "7", "--notify-url", cls.receiver.url,
                            "--notify-secret", "s3cret")

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        cls.receiver.close()

    def setUp(self):
        self.sim.control("POST", "reset")
        self.receiver.clear()

    def test_full_cycle_and_notifications(self):
        sim = self.sim
        sim.add({"path": "group/sub/image", "tags": 2})
        code, _, body = sim.start("group/sub/image", "pre")
        self.assertEqual((code, body["status"]), (202, "pre_import_in_progress"))
        self.assertEqual(body["name"], "image")
        sim.wait_status("group/sub/image", "pre_import_complete")
        code, _, body = sim.start("group/sub/image", "final")
        self.assertEqual((code, body["status"]), (202, "import_in_progress"))
        sim.wait_status("group/sub/image", "import_complete")
        self.assertEqual(sim.start("group/sub/image", "pre")[0], 200)
        self.assertEqual(sim.start("group/sub/image", "final")[0], 200)
        received = self.receiver.wait(2)
        self.assertEqual([r["body"]["status"] for r in received],
                         ["pre_import_complete", "import_complete"])
        for notification in received:
            self.assertEqual(notification["path"], "/notify/group/sub/image")
            self.assertEqual(notification["authorization"], "s3cret")
            self.assertEqual(set(notification["body"]), {"name", "path", "status", "detail"})
            self.assertEqual(notification["body"]["name"], "image")
        log = sim.control("GET", "notifications")
        self.assertEqual([e["outcome"] for e in log], ["delivered", "delivered"])
        self.assertTrue(all(e["authorization_sent"] for e in log))

    def test_start_400_import_type(self):
        self.sim.add({"path": "g/a"})
        for query in ("", "?import_type=", "?import_type=full", "?import_type=PRE"):
            code, _, body = self.sim.json_request("PUT", f"/gitlab/v1/import/g/a/{query}")
            self.assertEqual(code, 400, query)
            self.assertEqual(errors_code(body), "INVALID_QUERY_PARAMETER_VALUE")
        # 400 comes first, even for an unknown repository
        self.assertEqual(self.sim.json_request("PUT", "/gitlab/v1/import/nope/x/")[0], 400)

    def test_start_404_unknown(self):
        self.sim.add({"path": "g/gone", "exists": False})
        for path in ("g/unknown", "g/gone"):
            code, _, body = self.sim.start(path, "pre")
            self.assertEqual((code, errors_code(body)), (404, "NAME_UNKNOWN"))

    def test_start_200_native_and_complete(self):
        self.sim.add({"path": "g/native", "native": True, "exists": False},
                     {"path": "g/done", "status": "import_complete"})
        for path in ("g/native", "g/done"):
            for import_type in ("pre", "final"):
                self.assertEqual(self.sim.start(path, import_type)[0], 200)
        self.assertEqual(self.sim.status("g/native")[2]["status"], "native")

    def test_start_425_and_409(self):
        self.sim.add({"path": "g/p", "pre_import_outcomes": ["hang"]},
                     {"path": "g/f", "status": "pre_import_complete",
                      "import_outcomes": ["hang"]})
        self.assertEqual(self.sim.start("g/p", "pre")[0], 202)
        for import_type in ("pre", "final"):
            code, _, body = self.sim.start("g/p", import_type)
            self.assertEqual((code, errors_code(body)), (425, "PRE_IMPORT_IN_PROGRESS"))
        self.assertEqual(self.sim.start("g/f", "final")[0], 202)
        for import_type in ("pre", "final"):
            code, _, body = self.sim.start("g/f", import_type)
            self.assertEqual((code, errors_code(body)), (409, "IMPORT_IN_PROGRESS"))

    def test_start_429_import_limit(self):
        sim = self.sim
        sim.add(*[{"path": f"g/h{i}", "pre_import_outcomes": ["hang"]} for i in range(4)],
                {"path": "g/native", "native": True})
        for i in range(3):
            self.assertEqual(sim.start(f"g/h{i}")[0], 202)
        code, headers, body = sim.start("g/h3")
        self.assertEqual((code, errors_code(body)), (429, "IMPORT_RATE_LIMIT"))
        self.assertEqual(headers["Retry-After"], "7")
        # ordering: 404 before the limit, the limit before 200 and 425
        self.assertEqual(sim.start("g/unknown")[0], 404)
        self.assertEqual(sim.start("g/native")[0], 429)
        self.assertEqual(sim.start("g/h0")[0], 429)
        self.assertEqual(sim.json_request("PUT", "/gitlab/v1/import/g/h3/")[0], 400)
        state = sim.control("GET", "state?repositories=0")
        self.assertEqual((state["running_steps"], state["peak_running_steps"]), (3, 3))
        # a canceled step frees its slot
        sim.control("POST", "cancel", {"path": "g/h0"})
        self.assertEqual(sim.start("g/h3")[0], 202)

    def test_424_cases(self):
        sim = self.sim
        sim.add({"path": "g/new"}, {"path": "g/failed", "pre_import_outcomes": ["failed"]},
                {"path": "g/canceled", "pre_import_outcomes": ["hang"]})
        code, _, body = sim.start("g/new", "final")
        self.assertEqual((code, errors_code(body)), (424, "PRE_IMPORT_REQUIRED"))
        sim.start("g/failed", "pre")
        sim.wait_status("g/failed", "pre_import_failed")
        code, _, body = sim.start("g/failed", "final")
        self.assertEqual((code, errors_code(body)), (424, "PRE_IMPORT_FAILED"))
        self.assertEqual(sim.start("g/failed", "pre")[0], 202)  # a new pre-import is allowed
        sim.start("g/canceled", "pre")
        self.assertEqual(sim.cancel("g/canceled")[0], 202)
        time.sleep(0.7)  # past the cool-down
        code, _, body = sim.start("g/canceled", "final")
        self.assertEqual((code, errors_code(body)), (424, "PRE_IMPORT_CANCELED"))
        self.assertEqual(sim.start("g/canceled", "pre")[0], 202)

    def test_cancel_cooldown(self):
        sim = self.sim
        sim.add({"path": "g/c", "pre_import_outcomes": ["hang", "complete"]})
        sim.start("g/c", "pre")
        code, _, body = sim.cancel("g/c")
        self.assertEqual((code, body["status"]), (202, "pre_import_canceled"))
        for import_type in ("pre", "final"):
            code, headers, body = sim.start("g/c", import_type)
            self.assertEqual((code, errors_code(body)), (429, "IMPORT_REPOSITORY_NOT_READY"),
                             import_type)
            self.assertEqual(headers["Retry-After"], "7")
        time.sleep(0.7)
        self.assertEqual(sim.start("g/c", "pre")[0], 202)
        sim.wait_status("g/c", "pre_import_complete")
        self.assertEqual(sim.start("g/c", "final")[0], 202)

    def test_outcome_scripts_and_retries(self):
        sim = self.sim
        sim.add({"path": "g/s", "pre_import_outcomes": ["failed", "complete"],
                 "import_outcomes": ["failed", "canceled", "complete"],
                 "import_seconds": 0.05})
        sim.start("g/s", "pre")
        sim.wait_status("g/s", "pre_import_failed")
        sim.start("g/s", "pre")
        sim.wait_status("g/s", "pre_import_complete")
        sim.start("g/s", "final")
        sim.wait_status("g/s", "import_failed")
        self.assertEqual(sim.start("g/s", "pre")[0], 202)  # pre after import_failed
        sim.wait_status("g/s", "pre_import_complete")    # the last outcome repeats
        sim.start("g/s", "final")
        sim.wait_status("g/s", "import_canceled")
        self.assertEqual(sim.start("g/s", "final")[0], 202)  # pre-import still complete
        sim.wait_status("g/s", "import_complete")
        repo = sim.control("GET", "repositories/g/s")
        self.assertEqual(repo["attempts"], {"pre": 3, "final": 3})
        statuses = [n["body"]["status"] for n in self.receiver.wait(6)]
        self.assertEqual(statuses, ["pre_import_failed", "pre_import_complete", "import_failed",
                                    "pre_import_complete", "import_canceled",
                                    "import_complete"])

    def test_new_pre_import_after_import_canceled(self):
        self.sim.add({"path": "g/x", "status": "import_canceled"})
        self.assertEqual(self.sim.start("g/x", "pre")[0], 202)

    def test_canceled_step_not_overwritten(self):
        sim = self.sim
        sim.add({"path": "g/late"})
        sim.start("g/late", "pre")
        sim.cancel("g/late")
        time.sleep(0.4)  # the step's own end has passed
        self.assertEqual(sim.status("g/late")[2]["status"], "pre_import_canceled")
        received = self.receiver.wait(2, timeout=0.5)
        self.assertEqual([n["body"]["status"] for n in received], ["pre_import_canceled"])

    def test_status(self):
        sim = self.sim
        sim.add({"path": "g/never"}, {"path": "g/native", "native": True},
                {"path": "a/b/c", "status": "pre_import_failed"})
        for path in ("g/unknown", "g/never"):
            code, _, body = sim.status(path)
            self.assertEqual((code, errors_code(body)), (404, "NAME_UNKNOWN"))
        code, _, body = sim.status("a/b/c")
        self.assertEqual(code, 200)
        self.assertEqual(set(body), {"name", "path", "status", "detail"})
        self.assertEqual((body["name"], body["path"], body["status"]),
                         ("c", "a/b/c", "pre_import_failed"))
        self.assertEqual(sim.status("g/native")[2]["status"], "native")

    def test_cancel(self):
        sim = self.sim
        sim.add({"path": "g/idle", "status": "pre_import_failed"}, {"path": "g/never"},
                {"path": "g/native", "native": True},
                {"path": "g/pre", "pre_import_outcomes": ["hang"]},
                {"path": "g/final", "status": "pre_import_complete",
                 "import_outcomes": ["hang"]},
                {"path": "g/pre_done", "status": "pre_import_complete"},
                {"path": "g/done", "status": "import_complete"})
        for path in ("g/unknown", "g/never"):
            self.assertEqual(sim.cancel(path)[0], 404)
        code, _, body = sim.cancel("g/idle")
        self.assertEqual(code, 400)
        self.assertNotIn("status", body)
        self.assertEqual(set(body["errors"][0]), {"code", "message", "detail"})
        self.assertEqual(errors_code(body), "IMPORT_CANNOT_BE_CANCELED")
        for force in (False, True):
            code, _, body = sim.cancel("g/native", force=force)
            self.assertEqual((code, errors_code(body)), (400, "IMPORT_CANNOT_BE_CANCELED"))
        sim.start("g/pre", "pre")
        sim.start("g/final", "final")
        expected = {"g/pre": (False, "pre_import_canceled"),
                    "g/final": (False, "import_canceled"),
                    "g/pre_done": (True, "pre_import_canceled"),
                    "g/done": (True, "import_canceled")}
        for path, (force, status) in expected.items():
            code, _, body = sim.cancel(path, force=force)
            self.assertEqual((code, body["status"]), (202, status), path)
            self.assertEqual(set(body), {"name", "path", "status", "detail"})
        received = self.receiver.wait(4)
        self.assertEqual(sorted((n["body"]["path"], n["body"]["status"]) for n in received),
                         sorted((path, status) for path, (_, status) in expected.items()))
        self.assertEqual(sim.control("GET", "state?repositories=0")["running_steps"], 0)

    def test_registry_cancel_and_hang_outcome(self):
        sim = self.sim
        sim.add({"path": "g/stuck", "status": "pre_import_complete",
                 "import_outcomes": ["hang"]})
        sim.start("g/stuck", "final")
        time.sleep(0.3)  # longer than --import-seconds: still running
        self.assertEqual(sim.status("g/stuck")[2]["status"], "import_in_progress")
        self.assertEqual(sim.control("POST", "cancel", {"path": "g/stuck"})["status"],
                         "import_canceled")
        self.assertEqual(sim.status("g/stuck")[2]["status"], "import_canceled")
        sim.control("POST", "cancel", {"path": "g/stuck"}, expect=409)
        sim.control("POST", "cancel", {"path": "g/unknown"}, expect=404)
        notification = self.receiver.wait(1)[0]
        self.assertEqual(notification["body"]["status"], "import_canceled")
        log = sim.control("GET", "notifications")
        self.assertEqual(log[0]["cause"], "registry_cancel")
        # finish a stuck step on demand
        sim.add({"path": "g/stuck2", "pre_import_outcomes": ["hang"]})
        sim.start("g/stuck2", "pre")
        sim.control("POST", "finish", {"path": "g/stuck2", "outcome": "failed"})
        self.assertEqual(sim.status("g/stuck2")[2]["status"], "pre_import_failed")

    def test_lost_notifications(self):
        sim = self.sim
        sim.add(*[{"path": f"g/n{i}", "pre_import_seconds": 0.01} for i in range(3)])
        sim.control("POST", "notification_faults", {"lose": 2})
        for i in range(3):
            sim.start(f"g/n{i}")
            sim.wait_status(f"g/n{i}", "pre_import_complete")
        received = self.receiver.wait(1)
        time.sleep(0.2)
        self.assertEqual([n["body"]["path"] for n in self.receiver.received], ["g/n2"])
        log = sim.control("GET", "notifications")
        self.assertEqual([(e["path"], e["outcome"], e["delivered"]) for e in log],
                         [("g/n0", "lost", False), ("g/n1", "lost", False),
                          ("g/n2", "delivered", True)])
        self.assertEqual(received[0]["body"]["status"], "pre_import_complete")

    def test_lose_rate_is_seeded(self):
        def run():
            self.sim.control("POST", "reset")
            self.sim.add(*[{"path": f"g/r{i}", "pre_import_seconds": 0.01} for i in range(20)])
            self.sim.control("POST", "notification_faults", {"lose_rate": 0.5, "seed": 1})
            for i in range(20):
                self.sim.start(f"g/r{i}")
                self.sim.wait_status(f"g/r{i}", "pre_import_complete")
            return [e["outcome"] for e in sorted(self.sim.control("GET", "notifications"),
                                                 key=lambda e: e["path"])]
        first, second = run(), run()
        self.assertEqual(first, second)
        self.assertTrue(0 < first.count("lost") < 20)

    def test_failed_delivery_is_logged_not_retried(self):
        sim = self.sim
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{sock.getsockname()[1]}/n"
        sim.control("POST", "config", {"notify_url": dead})
        sim.add({"path": "g/d", "pre_import_seconds": 0.01})
        sim.start("g/d")
        sim.wait_status("g/d", "pre_import_complete")
        time.sleep(0.3)
        log = sim.control("GET", "notifications")
        self.assertEqual(len(log), 1)
        self.assertEqual((log[0]["outcome"], log[0]["delivered"]), ("failed", False))
        self.assertIn("ConnectionRefused", log[0]["error"])

    def test_escaped_paths_and_trailing_slash(self):
        sim = self.sim
        sim.add({"path": "grp/my-image.v_1", "tags": 1})
        code, _, body = sim.start("grp/my%2Dimage%2Ev_1", "pre")
        self.assertEqual((code, body["path"]), (202, "grp/my-image.v_1"))
        code, headers, _ = sim.request("GET", "/gitlab/v1/import/grp/my-image.v_1")
        self.assertEqual((code, headers["Location"]), (301, "/gitlab/v1/import/grp/my-image.v_1/"))
        self.assertEqual(sim.request("GET", "/gitlab/v1/import/a//b/")[0], 404)
        self.assertEqual(sim.request("GET", "/elsewhere")[0], 404)

    def test_auto_create(self):
        sim = self.sim
        self.assertEqual(sim.start("auto/one")[0], 404)
        sim.control("POST", "config", {"auto_create": True})
        self.assertEqual(sim.status("auto/two")[0], 404)  # exists, never imported
        self.assertEqual(sim.json_request("GET", "/v2/auto/two/tags/list")[2]["tags"], [])
        self.assertEqual(sim.start("auto/one")[0], 202)

    def test_request_log_and_counters(self):
        sim = self.sim
        sim.add({"path": "g/l"})
        sim.control("DELETE", "requests")
        sim.start("g/l", headers={"User-Agent": "registry_migration/1.0",
                                  "Authorization": "Bearer not.a.jwt"})
        sim.status("g/l")
        log = sim.control("GET", "requests")
        self.assertEqual([(e["kind"], e["code"]) for e in log], [("start", 202), ("status", 200)])
        first = log[0]
        self.assertEqual((first["method"], first["raw_path"], first["query"]),
                         ("PUT", "/gitlab/v1/import/g/l/", "import_type=pre"))
        self.assertEqual(first["user_agent"], "registry_migration/1.0")
        self.assertTrue(first["token_present"])
        self.assertIsNone(first["token_valid"])  # no key: tokens are not checked
        self.assertFalse(log[1]["token_present"])
        self.assertEqual(len(sim.control("GET", f"requests?since={first['seq']}")), 1)
        state = sim.control("GET", "state")
        self.assertEqual(state["requests"]["start"]["202"], 1)
        self.assertIn("g/l", state["repositories"])
        sim.control("DELETE", "requests")
        self.assertEqual(sim.control("GET", "requests"), [])



class NotificationConnections(unittest.TestCase):
    """One sender thread, so each notification goes on the connection the
    previous one kept, if it is still open."""

    def setUp(self):
        self.receivers = []
        self.sim = Simulator("--notify-workers", "1", "--notify-secret", "s")

    def tearDown(self):
        self.sim.stop()
        for receiver in self.receivers:
            receiver.close()

    def receiver(self, **behaviour):
        receiver = Receiver()
        for name, value in behaviour.items():
            setattr(receiver, name, value)
        self.receivers.append(receiver)
        self.sim.control("POST", "config", {"notify_url": receiver.url})
        return receiver

    def notify(self, receiver, paths):
        self.sim.add(*[{"path": path, "pre_import_seconds": 0.01} for path in paths])
        for count, path in enumerate(paths, 1):
            self.sim.start(path)
            self.sim.wait_status(path, "pre_import_complete")
            receiver.wait(count)
            if receiver.close_silently:
                receiver.wait_closed(count)
        time.sleep(0.2)
        return [n["body"]["path"] for n in receiver.received], {
            e["path"]: e["outcome"] for e in self.sim.control("GET", "notifications")}

    def test_kept_connection(self):
        paths = [f"g/k{i}" for i in range(5)]
        receiver = self.receiver()
        self.assertEqual(self.notify(receiver, paths), (paths, dict.fromkeys(paths, "delivered")))
        self.assertEqual(receiver.connections, 1)

    def test_closed_by_the_receiver_meanwhile(self):
        # Each connection closed after its answer, unannounced: the next
        # notification finds it closed and goes on a new one, delivered once.
        paths = [f"g/c{i}" for i in range(5)]
        receiver = self.receiver(close_silently=True)
        self.assertEqual(self.notify(receiver, paths), (paths, dict.fromkeys(paths, "delivered")))
        self.assertEqual(receiver.connections, 5)

    def test_sent_once_even_when_the_connection_breaks(self):
        # The receiver read the PUT (it may have handled it), then the kept
        # connection broke before the answer: a failed delivery, not sent
        # again.
        receiver = self.receiver(unanswered={"g/d1"})
        self.assertEqual(self.notify(receiver, ["g/d0", "g/d1"]),
                         (["g/d0", "g/d1"], {"g/d0": "delivered", "g/d1": "failed"}))
        self.assertEqual(receiver.connections, 1)

# ---------------------------------------------------------------------------
# Tag list
# ---------------------------------------------------------------------------

class TagList(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = Simulator()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.sim.control("POST", "reset")
        self.sim.add({"path": "g/img", "tags": ["v3", "latest", "v1", "v2", "beta"]},
                     {"path": "g/many", "tags": 7}, {"path": "g/old", "exists": False})

    def test_pagination(self):
        target, pages = "/v2/g/img/tags/list?n=2", []
        while target:
            code, headers, body = self.sim.json_request("GET", target)
            self.assertEqual(code, 200)
            self.assertEqual(body["name"], "g/img")
            self.assertEqual(headers["Docker-Distribution-API-Version"], "registry/2.0")
            pages.append(body["tags"])
            link = headers.get("Link")
            target = link[1:link.index(">")] if link else None
            if link:
                self.assertTrue(link.endswith('>; rel="next"'))
        self.assertEqual(pages, [["beta", "latest"], ["v1", "v2"], ["v3"]])
        code, headers, body = self.sim.json_request("GET", "/v2/g/many/tags/list?n=7")
        self.assertEqual((len(body["tags"]), headers.get("Link")), (7, None))

    def test_all_and_ignored_n(self):
        self.assertEqual(len(self.sim.json_request("GET", "/v2/g/many/tags/list")[2]["tags"]), 7)
        self.sim.control("POST", "config", {"ignore_tags_n": True})
        code, headers, body = self.sim.json_request("GET", "/v2/g/many/tags/list?n=2")
        self.assertEqual((len(body["tags"]), headers.get("Link")), (7, None))

    def test_unknown_and_bad_n(self):
        for path in ("g/nope", "g/old"):
            code, _, body = self.sim.json_request("GET", f"/v2/{path}/tags/list?n=10")
            self.assertEqual((code, errors_code(body)), (404, "NAME_UNKNOWN"))
        self.assertEqual(self.sim.json_request("GET", "/v2/g/img/tags/list?n=x")[0], 400)


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------

class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = Simulator()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.sim.control("POST", "reset")
        self.sim.add({"path": "g/a", "status": "pre_import_complete"}, {"path": "g/b"})

    def fault(self, action, match=None, times=None):
        self.sim.control("POST", "faults", {"rules": [
            {"match": match or {}, "times": times, "action": action}]})

    def test_delay_then_normal_answer(self):
        self.fault({"type": "delay", "ms": 300}, {"kind": "status"})
        started = time.monotonic()
        code, _, body = self.sim.status("g/a")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual((code, body["status"]), (200, "pre_import_complete"))

    def test_respond_with_headers_and_times(self):
        self.fault({"type": "respond", "code": 429, "headers": {"Retry-After": "120"}},
                   {"method": "PUT", "import_type": "pre"}, times=1)
        code, headers, _ = self.sim.start("g/b", "pre")
        self.assertEqual((code, headers["Retry-After"]), (429, "120"))
        self.assertEqual(self.sim.start("g/b", "pre")[0], 202)  # used up
        self.fault({"type": "respond", "code": 503, "body": "down for maintenance"})
        code, headers, body = self.sim.request("GET", "/gitlab/v1/import/g/a/")
        self.assertEqual((code, body), (503, b"down for maintenance"))
        rules = self.sim.control("GET", "faults")
        self.assertEqual(rules[0]["hits"], 1)
        self.sim.control("DELETE", "faults")
        self.assertEqual(self.sim.status("g/a")[0], 200)

    def test_match_keys(self):
        self.fault({"type": "respond", "code": 500},
                   {"kind": "start", "import_type": "final", "path": "g/a"})
        self.assertEqual(self.sim.start("g/b", "final")[0], 424)  # other path
        self.assertEqual(self.sim.start("g/a", "pre")[0], 202)    # other import_type
        self.assertEqual(self.sim.status("g/a")[0], 200)          # other kind
        self.sim.control("POST", "finish", {"path": "g/a"})
        self.assertEqual(self.sim.start("g/a", "final")[0], 500)

    def test_control_api_is_never_faulted(self):
        self.fault({"type": "drop"})
        self.assertIn("repositories_count", self.sim.control("GET", "state?repositories=0"))

    def test_redirect(self):
        self.fault({"type": "redirect", "location": "http://example.invalid/x"})
        code, headers, _ = self.sim.status("g/a")
        self.assertEqual((code, headers["Location"]), (302, "http://example.invalid/x"))
        self.fault({"type": "redirect", "location": "/elsewhere", "code": 307})
        self.assertEqual(self.sim.start("g/b")[0], 307)

    def test_hang_does_not_block_others(self):
        self.fault({"type": "hang", "seconds": 1.5}, {"kind": "status", "path": "g/a"})
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            zip(("data", "seconds", "closed"),
                raw_exchange(self.sim.port, raw_get("/gitlab/v1/import/g/a/")))))
        thread.start()
        time.sleep(0.2)
        started = time.monotonic()
        self.assertEqual(self.sim.status("g/b")[0], 404)  # answered while the other hangs
        self.assertLess(time.monotonic() - started, 0.5)
        thread.join()
        self.assertEqual(result["data"], b"")
        self.assertTrue(result["closed"])
        self.assertGreaterEqual(result["seconds"], 1.4)
        entries = self.sim.control("GET", "requests")  # in order of arrival
        self.assertEqual([(e["repository"], e["fault"], e["code"], e["completed"])
                          for e in entries],
                         [("g/a", "hang", None, True), ("g/b", None, 404, True)])

    def test_hang_ends_when_the_client_leaves(self):
        self.fault({"type": "hang", "seconds": 60})
        with socket.create_connection(("127.0.0.1", self.sim.port)) as sock:
            sock.sendall(raw_get("/gitlab/v1/import/g/a/"))
            time.sleep(0.2)
        deadline = time.monotonic() + 2
        while self.sim.control("GET", "state?repositories=0")["concurrent_requests"]:
            self.assertLess(time.monotonic(), deadline, "the hanging thread was not freed")
            time.sleep(0.05)
        self.assertTrue(self.sim.control("GET", "requests")[0]["completed"])

    def test_drop(self):
        self.fault({"type": "drop"})
        data, seconds, closed = raw_exchange(self.sim.port, raw_get("/gitlab/v1/import/g/a/"))
        self.assertEqual((data, closed), (b"", True))
        self.assertLess(seconds, 1)

    def test_garbage(self):
        self.fault({"type": "garbage"})
        data, _, closed = raw_exchange(self.sim.port, raw_get("/gitlab/v1/import/g/a/"))
        self.assertTrue(closed)
        self.assertTrue(data)
        self.assertFalse(data.startswith(b"HTTP/"))

    def test_truncate(self):
        self.fault({"type": "truncate"})
        data, _, closed = raw_exchange(self.sim.port, raw_get("/gitlab/v1/import/g/a/"))
        self.assertTrue(closed)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")][0])
        self.assertGreater(length, len(body))
        self.assertTrue(body)

    def test_malformed_and_odd_status_bodies(self):
        self.fault({"type": "malformed_json"}, times=1)
        code, _, body = self.sim.request("GET", "/gitlab/v1/import/g/a/")
        self.assertEqual(code, 200)
        self.assertRaises(ValueError, json.loads, body)
        self.fault({"type": "status_missing"}, times=1)
        code, _, body = self.sim.json_request("GET", "/gitlab/v1/import/g/a/")
        self.assertEqual(code, 200)
        self.assertNotIn("status", body)
        self.assertEqual(body["path"], "g/a")
        self.fault({"type": "status_not_string"}, times=1)
        self.assertEqual(self.sim.json_request("GET", "/gitlab/v1/import/g/a/")[2]["status"], 42)

    def test_huge_body(self):
        self.fault({"type": "huge_body", "bytes": 1 << 20}, times=1)
        code, headers, body = self.sim.request("GET", "/gitlab/v1/import/g/a/")
        self.assertEqual((code, len(body), int(headers["Content-Length"])),
                         (200, 1 << 20, 1 << 20))
        self.assertEqual(json.loads(body)["status"], "pre_import_complete")
        self.fault({"type": "huge_body"}, times=1)  # 10 MiB; the client hangs up early
        with socket.create_connection(("127.0.0.1", self.sim.port)) as sock:
            sock.sendall(raw_get("/gitlab/v1/import/g/a/"))
            self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        self.assertEqual(self.sim.status("g/a")[0], 200)  # the simulator is fine

    def test_keep_alive_after_faults(self):
        connection = self.sim.connection()
        self.fault({"type": "respond", "code": 500}, times=1)
        for expected in (500, 200, 200):
            connection.request("GET", "/gitlab/v1/import/g/a/")
            response = connection.getresponse()
            response.read()
            self.assertEqual(response.status, expected)
        connection.close()

    def test_registry_down_refuses_connections_then_comes_back(self):
        # A connection opened before: its registry requests get no answer
        # while down (a client retrying on a fresh connection is refused).
        kept = self.sim.connection()
        kept.request("GET", "/gitlab/v1/import/g/a/")
        kept.getresponse().read()
        self.assertEqual(self.sim.control("POST", "down", {"seconds": 1.5}),
                         {"down_seconds": 1.5})
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.sim.port), timeout=2).close()
        kept.request("GET", "/gitlab/v1/import/g/a/")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            kept.getresponse()
        kept.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                code, _, body = self.sim.status("g/a")
                break
            except ConnectionRefusedError:
                self.assertLess(time.monotonic(), deadline, "still refusing after 5 s")
                time.sleep(0.1)
        self.assertEqual((code, body["status"]), (200, "pre_import_complete"))
        downs = [e for e in self.sim.control("GET", "requests") if e["fault"] == "down"]
        self.assertEqual(len(downs), 1)
        # Accepting again, for good.
        self.assertEqual(self.sim.status("g/b")[0], 404)

    def test_registry_down_ends_at_reset(self):
        # The control API answers on a connection opened before going down.
        kept = self.sim.connection()
        kept.request("GET", "/_sim/health")
        kept.getresponse().read()
        self.sim.control("POST", "down", {"seconds": 60})
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.sim.port), timeout=2).close()
        kept.request("POST", "/_sim/reset", body="")
        response = kept.getresponse()
        response.read()
        self.assertEqual(response.status, 200)
        kept.close()
        self.assertEqual(self.sim.status("g/a")[0], 404)
        self.sim.control("POST", "down", {"seconds": 0}, expect=400)

    def test_latency(self):
        self.sim.control("POST", "config", {"latency_ms": 200})
        started = time.monotonic()
        self.sim.status("g/a")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        started = time.monotonic()
        self.sim.control("GET", "health")
        self.assertLess(time.monotonic() - started, 0.15)

    def test_bad_rules_rejected(self):
        for rule in ({"action": {"type": "explode"}}, {"match": {"colour": "red"},
                                                      "action": {"type": "drop"}},
                     {"times": -1, "action": {"type": "drop"}}):
            self.sim.control("POST", "faults", {"rules": [rule]}, expect=400)


# ---------------------------------------------------------------------------
# Hostile answers and the catcher
# ---------------------------------------------------------------------------

def chunked_response(port, target, timeout=10):
    """(status, headers, body) through http.client, which decodes chunked."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = Simulator()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        self.sim.control("POST", "reset")
        self.sim.add({"path": "g/a", "status": "import_complete", "tags": 3})

    def fault(self, action, match=None, times=None, append=False):
        self.sim.control("POST", "faults", {"append": append, "rules": [
            {"match": match or {}, "times": times, "action": action}]})

    STATUS, TAGS = "/gitlab/v1/import/g/a/", "/v2/g/a/tags/list?n=2"

    def test_deep_json(self):
        self.fault({"type": "deep_json", "depth": 1000})
        for target in (self.STATUS, self.TAGS):
            code, _, body = self.sim.request("GET", target)
            self.assertEqual((code, body), (200, b"[" * 1000 + b"]" * 1000))
        self.fault({"type": "deep_json", "depth": 1_000_000, "closed": False})
        code, headers, body = self.sim.request("GET", self.STATUS)
        self.assertEqual((len(body), int(headers["Content-Length"])), (1_000_000, 1_000_000))
        self.assertEqual(body.strip(b"["), b"")
        # Nested objects as one more member of a valid-looking status.
        self.fault({"type": "deep_json", "depth": 50, "nest": "object", "member": "extra",
                    "code": 202}, {"kind": "start"})
        code, _, body = self.sim.request("PUT", self.STATUS + "?import_type=pre")
        data = json.loads(body)
        self.assertEqual((code, data["status"], data["path"]), (202, "import_complete", "g/a"))
        depth, inner = 0, data["extra"]
        while isinstance(inner, dict):
            inner, depth = inner["a"], depth + 1
        self.assertEqual((depth, inner), (50, 0))
        self.assertIsNone(self.sim.control("GET", "repositories/g/a")["running_step"],
                          "a faulted start does not reach the model")

    def test_nul_garbage(self):
        self.fault({"type": "nul_garbage"})
        code, headers, body = self.sim.request("GET", self.STATUS)
        valid, nul, garbage = body.partition(b"\0")
        self.assertEqual((code, json.loads(valid)["status"], nul, garbage),
                         (200, "import_complete", b"\0", b"garbage"))
        self.assertEqual(int(headers["Content-Length"]), len(body))
        self.assertEqual(json.loads(self.sim.request("GET", self.TAGS)[2].partition(b"\0")[0])
                         ["tags"], ["latest", "v1"])
        self.fault({"type": "nul_garbage", "where": "in_string", "status": "pre_import_complete",
                    "garbage": "!"})
        self.assertIn(b'"status": "pre_import_complete\x00!"', self.sim.request("GET", self.STATUS)[2])
        self.assertIn(b'"tags": ["latest\x00!"', self.sim.request("GET", self.TAGS)[2])
        self.fault({"type": "nul_garbage", "where": "escaped"}, {"kind": "cancel"})
        code, _, body = self.sim.request("DELETE", self.STATUS)
        self.assertEqual((code, json.loads(body)["status"]), (200, "import_complete\x00garbage"))

    def test_invalid_utf8(self):
        cases = [({}, b'"status": "import_complete\xff"'),
                 ({"sequence": "eda080", "status": "import_failed"},
                  b'"status": "import_failed\xed\xa0\x80"'),
                 ({"where": "detail", "sequence": "c0af"}, b'"detail": "detail \xc0\xaf"'),
                 ({"where": "key"}, b'"key\xff": "x"')]
        for params, expected in cases:
            self.fault(dict(params, type="invalid_utf8"))
            code, _, body = self.sim.request("GET", self.STATUS)
            self.assertEqual(code, 200)
            self.assertIn(expected, body)
            self.assertRaises(UnicodeDecodeError, body.decode, "utf-8")
        self.fault({"type": "invalid_utf8", "sequence": "e282"}, {"kind": "tags"})
        self.assertIn(b'["latest\xe2\x82", "v1"]', self.sim.request("GET", self.TAGS)[2])
        self.fault({"type": "invalid_utf8", "where": "detail"}, {"kind": "tags"})
        self.assertIn(b'"name": "g/a\xff"', self.sim.request("GET", self.TAGS)[2])

    def test_huge_body_framings(self):
        size = 3 << 20
        self.fault({"type": "huge_body", "bytes": size, "framing": "chunked",
                    "status": "pre_import_in_progress"})
        code, headers, body = chunked_response(self.sim.port, self.STATUS)
        self.assertEqual((code, headers["Transfer-Encoding"], headers["Content-Length"]),
                         (200, "chunked", None))
        self.assertEqual((len(body), json.loads(body)["status"]), (size, "pre_import_in_progress"))
        # framing close: no length at all, the body ends with the connection.
        self.fault({"type": "huge_body", "bytes": size, "framing": "close"})
        data, _, closed = raw_exchange(self.sim.port, raw_get(self.STATUS))
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(closed)
        self.assertNotIn(b"content-length", head.lower())
        self.assertNotIn(b"chunked", head.lower())
        self.assertEqual(len(body), size)
        # On the tag list: a valid list of long tag names of about that size.
        self.fault({"type": "huge_body", "bytes": size, "tag_length": 128}, {"kind": "tags"})
        code, headers, body = self.sim.request("GET", self.TAGS)
        tags = json.loads(body)["tags"]
        self.assertEqual(int(headers["Content-Length"]), len(body))
        self.assertTrue(size - 200 < len(body) <= size, len(body))
        self.assertEqual((len(set(tags)), {len(t) for t in tags}), (len(tags), {128}))

    def follow(self, target, limit=100):
        """Follow a tag list's Link headers (relative or on this simulator)."""
        pages, base = [], f"http://127.0.0.1:{self.sim.port}"
        while target and len(pages) < limit:
            code, headers, body = self.sim.request("GET", target)
            self.assertEqual(code, 200)
            pages.append((json.loads(body)["tags"], len(body)))
            link = headers.get("Link")
            target = link[1:link.index(">")] if link else None
            if target and target.startswith(base):
                target = target[len(base):]
        return pages

    def test_tag_pages(self):
        self.fault({"type": "tag_pages", "pages": 4, "tags_per_page": 3, "tag_length": 20},
                   {"kind": "tags"})
        pages = self.follow("/v2/g/a/tags/list?n=2")  # n is ignored, like some registries
        self.assertEqual([len(tags) for tags, _ in pages], [3, 3, 3, 3])
        every = [tag for tags, _ in pages for tag in tags]
        self.assertEqual((every, len(set(every))), (sorted(every), 12))
        self.assertEqual(every[0], "p000000-0000000xxxxx")
        # Pages of a given size, and an absolute Link from a template.
        self.fault({"type": "tag_pages", "pages": 3, "page_bytes": 200_000,
                    "link": '<{origin}/v2/{path}/tags/list?n={n}&last={last}&page={page}>; rel="next"'},
                   {"kind": "tags"})
        code, headers, _ = self.sim.request("GET", "/v2/g/a/tags/list?n=7")
        self.assertRegex(headers["Link"], rf'^<http://127\.0\.0\.1:{self.sim.port}/v2/g/a/tags/list'
                                          r'\?n=7&last=p000000-\d{7}x+&page=1>; rel="next"$')
        pages = self.follow("/v2/g/a/tags/list")
        self.assertEqual(len(pages), 3)
        for _, size in pages:
            self.assertTrue(190_000 < size <= 200_000, size)
        # A Link anywhere: the test decides (here: userinfo pointing elsewhere).
        self.fault({"type": "tag_pages", "pages": 2,
                    "link": '<http://{host}:{port}@127.0.0.1:9/v2/{path}/tags/list>; rel="next"'},
                   {"kind": "tags"})
        link = self.sim.request("GET", self.TAGS)[1]["Link"]
        self.assertEqual(link, f'<http://127.0.0.1:{self.sim.port}@127.0.0.1:9/v2/g/a/tags/list>;'
                               ' rel="next"')

    def test_trickle_finite(self):
        self.fault({"type": "trickle", "interval_ms": 50, "seconds": 0.3})
        started = time.monotonic()
        code, headers, body = self.sim.request("GET", self.STATUS)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual((code, int(headers["Content-Length"])), (200, len(body)))
        self.assertEqual(body[:6], b" " * 6)
        self.assertEqual(json.loads(body)["status"], "import_complete")  # the model's answer
        self.fault({"type": "trickle", "interval_ms": 50, "seconds": 0.3, "stage": "headers"})
        started = time.monotonic()
        code, headers, body = self.sim.request("GET", self.TAGS)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual((code, headers["X-Trickle"]), (200, "aaaaaa"))
        self.assertEqual(json.loads(body)["tags"], ["tag000000", "tag000001"])
        # On a start the request takes effect: the answer is just slow.
        self.sim.add({"path": "g/new"})
        self.fault({"type": "trickle", "interval_ms": 20, "seconds": 0.1}, {"kind": "start"})
        code, _, body = self.sim.start("g/new")
        self.assertEqual((code, body["status"]), (202, "pre_import_in_progress"))

    def test_trickle_forever_until_the_client_leaves(self):
        for stage, first in (("body", b"Transfer-Encoding: chunked"), ("headers", b"X-Trickle: ")):
            self.fault({"type": "trickle", "interval_ms": 50, "stage": stage})
            with socket.create_connection(("127.0.0.1", self.sim.port), timeout=5) as sock:
                sock.sendall(raw_get(self.STATUS))
                deadline, data = time.monotonic() + 0.6, b""
                while time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        chunk = sock.recv(4096)
                    except socket.timeout:
                        break
                    self.assertTrue(chunk, "the simulator closed a forever trickle")
                    data += chunk
            self.assertIn(first, data)
            trickled = data.count(b"a") if stage == "headers" else data.count(b"\r\n \r\n")
            self.assertTrue(8 <= trickled <= 14, (stage, trickled, data[-80:]))
            deadline = time.monotonic() + 2
            while self.sim.control("GET", "state?repositories=0")["concurrent_requests"]:
                self.assertLess(time.monotonic(), deadline, "the trickling thread was not freed")
                time.sleep(0.05)

    def test_append_and_bad_parameters(self):
        self.fault({"type": "deep_json", "depth": 3}, {"kind": "status"})
        self.fault({"type": "nul_garbage"}, {"kind": "tags"}, append=True)
        self.assertEqual([r["action"]["type"] for r in self.sim.control("GET", "faults")],
                         ["deep_json", "nul_garbage"])
        for action in ({"type": "deep_json", "dept": 3}, {"type": "deep_json", "depth": 0},
                       {"type": "nul_garbage", "where": "inside"},
                       {"type": "invalid_utf8", "sequence": "zz"},
                       {"type": "invalid_utf8", "sequence": ""},
                       {"type": "huge_body", "framing": "gzip"},
                       {"type": "tag_pages", "tag_length": 8},
                       {"type": "trickle", "code": 200},
                       {"type": "trickle", "interval_ms": 0}):
            self.sim.control("POST", "faults", {"rules": [{"action": action}]}, expect=400)
        self.assertEqual(len(self.sim.control("GET", "faults")), 2, "a refused list changes nothing")


class Catcher(unittest.TestCase):
    def test_catch_all_logs_everything(self):
        catcher = Simulator("--catch-all")
        try:
            code, _, body = catcher.json_request(
                "GET", "/v2/any/thing/tags/list?n=5", {"Authorization": "Bearer secret.token.x"})
            self.assertEqual((code, body), (200, {"name": "any/thing", "tags": ["caught"]}))
            code, _, body = catcher.json_request("GET", "/", {"Authorization": "Basic dTpw"})
            self.assertEqual((code, body["status"]), (200, "import_complete"))
            code, _, body = catcher.json_request("PUT", "/gitlab/v1/import/x/?import_type=pre")
            self.assertEqual((code, body["path"]), (200, "x"))
            # Not HTTP at all (what a TLS client sends first): logged as "invalid".
            raw_exchange(catcher.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", timeout=2)
            log = catcher.control("GET", "requests")
            self.assertEqual([(e["kind"], e["authorization"]) for e in log],
                             [("tags", "Bearer secret.token.x"), ("unknown", "Basic dTpw"),
                              ("start", None), ("invalid", None)])
            self.assertTrue(log[3]["raw_request"].startswith("\x16\x03\x01"))
            self.assertEqual(log[0]["host"], f"127.0.0.1:{catcher.port}")
            state = catcher.control("GET", "state?repositories=0")
            self.assertGreaterEqual(state["connections_accepted"], 4)
            # Off at run time: a normal registry again.
            catcher.control("POST", "config", {"catch_all": False})
            self.assertEqual(catcher.json_request("GET", "/v2/any/thing/tags/list")[0], 404)
        finally:
            self.assertEqual(catcher.stop(), 0)


# ---------------------------------------------------------------------------
# https (--tls-cert, --tls-key, --tls-client-ca)
# ---------------------------------------------------------------------------

class TlsSimulator(Simulator):
    """The simulator serving https; its control API (what Simulator's
    helpers use) is on a plain-HTTP port of its own."""

    def __init__(self, *args):
        self.process = subprocess.Popen([PYTHON, SCRIPT, "--port", "0", *args],
                                        stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        line = self.process.stdout.readline() if ready else ""
        words = line.split()
        if len(words) != 5 or not words[2].startswith("https://127.0.0.1:") \
                or words[3] != "control":
            self.process.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.tls_port = int(words[2].rsplit(":", 1)[1])
        self.port = int(words[4].rsplit(":", 1)[1])

    def tls_request(self, context, method, target, headers=None):
        connection = http.client.HTTPSConnection("127.0.0.1", self.tls_port, timeout=10,
                                                 context=context)
        try:
            connection.request(method, target, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="simtls")
        path = cls.path
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"),
                "-out", path("ca.crt"), "-subj", "/CN=simulator test CA", "-days", "1")
        for name, cn, extension in (
                ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\n"),
                ("client", "the client", "extendedKeyUsage=clientAuth\n")):
            with open(path(f"{name}.ext"), "w") as handle:
                handle.write(extension)
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path(f"{name}.key"),
                    "-out", path(f"{name}.csr"), "-subj", f"/CN={cn}")
            openssl("x509", "-req", "-in", path(f"{name}.csr"), "-CA", path("ca.crt"),
                    "-CAkey", path("ca.key"), "-CAcreateserial", "-out", path(f"{name}.crt"),
                    "-days", "1", "-extfile", path(f"{name}.ext"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.directory, ignore_errors=True)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.directory, name)

    def client_context(self, certificate=False):
        context = ssl.create_default_context(cafile=self.path("ca.crt"))
        if certificate:
            context.load_cert_chain(self.path("client.crt"), self.path("client.key"))
        return context

    def test_https_registry_and_plain_control(self):
        sim = TlsSimulator("--tls-cert", self.path("server.crt"),
                           "--tls-key", self.path("server.key"))
        try:
            sim.add({"path": "g/img"})
            code, body = sim.tls_request(self.client_context(), "PUT",
                                         "/gitlab/v1/import/g/img/?import_type=pre")
            self.assertEqual((code, json.loads(body)["status"]), (202, "pre_import_in_progress"))
            # A client that does not trust the CA: no request reaches the registry.
            with self.assertRaises(ssl.SSLError):
                sim.tls_request(ssl.create_default_context(), "GET", "/v2/")
            # Plain HTTP on the https port: the Go server's answer, the request logged.
            reply, _, _ = raw_exchange(sim.tls_port, b"GET /gitlab/v1/import/g/img/ HTTP/1.1\r\n"
                                 b"Host: x\r\nAuthorization: Bearer a.b.c\r\n\r\n", timeout=5)
            self.assertTrue(reply.startswith(b"HTTP/1.0 400 Bad Request\r\n"), reply)
            self.assertIn(b"Client sent an HTTP request to an HTTPS server.", reply)
            # The registry is not on the control port.
            self.assertEqual(sim.request("GET", "/v2/")[0], 404)
            log = sim.control("GET", "requests")
            self.assertEqual([(e["kind"], e["authorization"], e["tls_client"]) for e in log],
                             [("start", None, None), ("tls_failed", None, None),
                              ("plain_http_on_tls", "Bearer a.b.c", None)])
            self.assertIn("UNKNOWN_CA", log[1]["tls_error"])
            self.assertEqual(log[2]["raw_path"], "/gitlab/v1/import/g/img/")
            self.assertEqual(sim.control("GET", "state?repositories=0")["connections_accepted"], 3)
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_client_certificate_required(self):
        sim = TlsSimulator("--tls-cert", self.path("server.crt"),
                           "--tls-key", self.path("server.key"),
                           "--tls-client-ca", self.path("ca.crt"))
        try:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                sim.tls_request(self.client_context(), "GET", "/v2/")
            code, _ = sim.tls_request(self.client_context(certificate=True), "GET", "/v2/")
            self.assertEqual(code, 200)
            log = sim.control("GET", "requests")
            self.assertEqual([(e["kind"], e["tls_client"]) for e in log],
                             [("tls_failed", None), ("base", "the client")])
            self.assertIn("CERTIFICATE", log[0]["tls_error"])
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_option_errors(self):
        for args in (["--tls-cert", self.path("server.crt")],
                     ["--tls-client-ca", self.path("ca.crt")]):
            result = subprocess.run([PYTHON, SCRIPT, *args], capture_output=True, text=True)
            self.assertEqual(result.returncode, 2, args)
        result = subprocess.run([PYTHON, SCRIPT, "--tls-cert", self.path("ca.key"),
                                 "--tls-key", self.path("ca.key")], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("TLS files", result.stderr)


# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------

def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True,
                          check=True).stdout


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def expected_kid(public_pem):
    der = openssl("pkey", "-pubin", "-in", public_pem, "-outform", "DER")
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


class Tokens(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="simtest")
        cls.key = os.path.join(cls.directory, "key.pem")
        cls.other_key = os.path.join(cls.directory, "other.pem")
        cls.public = os.path.join(cls.directory, "public.pem")
        for key in (cls.key, cls.other_key):
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", key)
        openssl("pkey", "-in", cls.key, "-pubout", "-out", cls.public)
        cls.kid = expected_kid(cls.public)
        cls.sim = Simulator("--jwt-public-key", cls.public, "--pre-import-seconds", "0.1")

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        shutil.rmtree(cls.directory)

    def setUp(self):
        self.sim.control("POST", "reset")
        self.sim.add({"path": "g/a", "tags": 3})

    def token(self, key=None, header=None, **claims):
        now = int(time.time())
        body = {"iss": "registry_migration", "aud": "container_registry", "iat": now,
                "nbf": now, "exp": now + 300, "jti": str(now),
                "access": [{"type": "registry", "name": "import", "actions": ["*"]}]}
        body.update(claims)
        head = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        head.update(header or {})
        signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(body).encode())}"
        signature = openssl("dgst", "-sha256", "-sign", key or self.key,
                            data=signing_input.encode())
        return f"{signing_input}.{b64url(signature)}"

    @staticmethod
    def bearer(token):
        return {"Authorization": f"Bearer {token}"}

    def test_key_id_matches_openssl(self):
        self.assertEqual(self.sim.control("GET", "config")["jwt"]["kid"], self.kid)
        # the same key id from the private key and from a certificate
        certificate = os.path.join(self.directory, "cert.pem")
        openssl("req", "-x509", "-new", "-key", self.key, "-subj", "/CN=test", "-days", "1",
                "-out", certificate)
        rsa_private = os.path.join(self.directory, "rsa.pem")
        openssl("rsa", "-in", self.key, "-traditional", "-out", rsa_private)
        for path in (self.key, certificate, rsa_private):
            self.assertEqual(registry_simulator.load_rsa_public_key(path).kid, self.kid, path)

    def test_valid_tokens(self):
        import_token = self.token()
        code, _, _ = self.sim.start("g/a", headers=self.bearer(import_token))
        self.assertEqual(code, 202)
        self.assertEqual(self.sim.status("g/a", headers=self.bearer(import_token))[0], 200)
        pull = self.token(access=[{"type": "repository", "name": "g/a",
                                   "actions": ["pull", "push"]}])
        code, _, body = self.sim.json_request("GET", "/v2/g/a/tags/list?n=10",
                                              self.bearer(pull))
        self.assertEqual((code, len(body["tags"])), (200, 3))
        # within the 60 s leeway
        now = int(time.time())
        self.assertEqual(self.sim.status("g/a", self.bearer(
            self.token(exp=now - 30, nbf=now + 30)))[0], 200)
        log = self.sim.control("GET", "requests")
        self.assertTrue(all(e["token_present"] and e["token_valid"] for e in log))
        self.assertEqual(log[0]["claims"]["access"][0]["name"], "import")
        self.assertEqual(log[0]["token_header"]["kid"], self.kid)

    def test_invalid_tokens(self):
        now = int(time.time())
        tampered = self.token()
        tampered = tampered[:-6] + ("AAAAAA" if not tampered.endswith("AAAAAA") else "BBBBBB")
        cases = {
            "wrong key": self.token(key=self.other_key),
            "expired": self.token(exp=now - 120),
            "not yet valid": self.token(nbf=now + 120),
            "no exp": self.token(exp=None),
            "wrong aud": self.token(aud="other"),
            "aud list": self.token(aud=["container_registry"]),
            "wrong iss": self.token(iss="someone"),
            "wrong kid": self.token(header={"kid": "ABCD:" * 11 + "ABCD"}),
            "no kid": self.token(header={"kid": None}),
            "wrong alg": self.token(header={"alg": "RS512"}),
            "wrong access": self.token(access=[{"type": "repository", "name": "g/a",
                                                "actions": ["pull"]}]),
            "import without *": self.token(access=[{"type": "registry", "name": "import",
                                                    "actions": ["pull"]}]),
            "tampered": tampered,
            "garbage": "abc.def",
        }
        for name, token in cases.items():
            code, headers, body = self.sim.status("g/a", self.bearer(token))
            self.assertEqual(code, 401, name)
            self.assertEqual(errors_code(body), "UNAUTHORIZED")
            self.assertIn("Bearer", headers["WWW-Authenticate"])
        code, _, _ = self.sim.start("g/a")  # no token at all
        self.assertEqual(code, 401)
        # a tag-list token for another repository, an import token on the tag list
        for access in ([{"type": "repository", "name": "g/other", "actions": ["pull"]}],
                       [{"type": "registry", "name": "import", "actions": ["*"]}]):
            code = self.sim.json_request("GET", "/v2/g/a/tags/list",
                                         self.bearer(self.token(access=access)))[0]
            self.assertEqual(code, 401)
        log = self.sim.control("GET", "requests")
        self.assertTrue(all(e["token_valid"] is False for e in log))
        self.assertTrue(all(e["token_error"] for e in log))
        self.assertEqual(self.sim.control("GET", "repositories/g/a")["status"], None)


# ---------------------------------------------------------------------------
# Shutdown and load
# ---------------------------------------------------------------------------

class Lifecycle(unittest.TestCase):
    def test_port_file_and_options(self):
        with tempfile.TemporaryDirectory() as directory:
            port_file = os.path.join(directory, "port")
            sim = Simulator("--port-file", port_file)
            try:
                with open(port_file) as handle:
                    self.assertEqual(int(handle.read()), sim.port)
            finally:
                self.assertEqual(sim.stop(), 0)

    def test_shutdown_cancels_running_steps(self):
        receiver = Receiver()
        sim = Simulator("--notify-url", receiver.url, "--notify-secret", "x",
                        "--pre-import-seconds", "30")
        try:
            sim.add({"path": "g/long"}, {"path": "g/stuck", "status": "pre_import_complete",
                                         "import_outcomes": ["hang"]}, {"path": "g/idle"})
            self.assertEqual(sim.start("g/long", "pre")[0], 202)
            self.assertEqual(sim.start("g/stuck", "final")[0], 202)
            started = time.monotonic()
            self.assertEqual(sim.stop(), 0)
            self.assertLess(time.monotonic() - started, 5)
            received = receiver.wait(2, timeout=2)
            self.assertEqual(sorted((n["body"]["path"], n["body"]["status"]) for n in received),
                             [("g/long", "pre_import_canceled"),
                              ("g/stuck", "import_canceled")])
        finally:
            sim.stop()
            receiver.close()

    def test_sigint_exits_cleanly(self):
        sim = Simulator()
        sim.process.send_signal(signal.SIGINT)
        self.assertEqual(sim.process.wait(10), 0)
        sim.stop()

    def test_300_simultaneous_connections(self):
        sim = Simulator("--auto-create")
        try:
            barrier, codes = threading.Barrier(300), []

            def client(index):
                connection = sim.connection(timeout=30)
                barrier.wait()
                connection.request("PUT", f"/gitlab/v1/import/burst/r{index}/?import_type=pre")
                response = connection.getresponse()
                response.read()
                codes.append(response.status)
                connection.close()

            threads = [threading.Thread(target=client, args=(i,)) for i in range(300)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.assertEqual(codes, [202] * 300)
            state = sim.control("GET", "state?repositories=0")
            self.assertEqual(state["running_steps"], 300)
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_load_2000_repositories_100_clients(self):
        receiver = Receiver()
        sim = Simulator("--pre-import-seconds", "0.05", "--import-seconds", "0.05",
                        "--notify-url", receiver.url)
        try:
            paths = [f"load/group{i % 50}/image{i}" for i in range(2000)]
            sim.add(*[{"path": path, "tags": 1} for path in paths])
            errors = []

            def client(share):
                connection = sim.connection(timeout=30)

                def call(method, target):
                    connection.request(method, target)
                    response = connection.getresponse()
                    return response.status, json.loads(response.read())

                try:
                    for path in share:
                        for import_type, done in (("pre", "pre_import_complete"),
                                                  ("final", "import_complete")):
                            base = f"/gitlab/v1/import/{path}/"
                            code, _ = call("PUT", f"{base}?import_type={import_type}")
                            if code != 202:
                                errors.append((path, import_type, code))
                                return
                            while call("GET", base)[1]["status"] != done:
                                time.sleep(0.02)
                except Exception as error:  # reported below
                    errors.append(repr(error))
                finally:
                    connection.close()

            started = time.monotonic()
            threads = [threading.Thread(target=client, args=(paths[i::100],))
                       for i in range(100)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            self.assertEqual(errors, [])
            state = sim.control("GET", "state?repositories=0")
            self.assertEqual(state["statuses"], {"import_complete": 2000})
            self.assertEqual(state["requests"]["start"], {"202": 4000})
            self.assertGreaterEqual(state["peak_concurrent_requests"], 20)
            self.assertGreaterEqual(state["peak_running_steps"], 20)
            self.assertEqual(len(receiver.wait(4000, timeout=10)), 4000)
            print(f"\n  load: 2000 repositories in {elapsed:.1f} s, "
                  f"{state['requests_total']} requests, peak "
                  f"{state['peak_concurrent_requests']} concurrent, "
                  f"{state['peak_running_steps']} running steps", file=sys.stderr)
        finally:
            self.assertEqual(sim.stop(), 0)
            receiver.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
