#!/usr/bin/python3
"""Simulator of the container registry's import API.

The /gitlab/v1/import API exists only in GitLab's (open-source) container
registry, in the migration mode of some 3.x releases; the tests do not need
such a registry, because this program reproduces what the extension relies
on: starting pre-imports and final imports, their answer codes and
ordering rules, the status and cancel calls, the Docker V2 tag list, the
notifications sent when a step ends, RS256 token verification, and a control
API under /_sim/ through which tests add repositories, script outcomes and
inject transport faults. With --tls-cert and --tls-key it serves the
registry over https, as self-hosted registries run it (optionally asking
for a client certificate), and the control API on a plain-HTTP port of
its own.

Standard library only: it runs with Debian's /usr/bin/python3, also as the
`postgres` user. See README.md next to this file.
"""

import argparse
import base64
import collections
import hashlib
import heapq
import hmac
import http.client
import http.server
import itertools
import json
import math
import os
import random
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse

VERSION = "1.0"

PRE, FINAL = "pre", "final"
STEP_PREFIX = {PRE: "pre_import", FINAL: "import"}
OUTCOMES = ("complete", "failed", "canceled", "hang")
# Statuses a test may preset on a repository (no running step behind them).
PRESET_STATUSES = (
    "pre_import_complete", "pre_import_failed", "pre_import_canceled",
    "import_complete", "import_failed", "import_canceled",
)
FAULT_TYPES = (
    "delay", "respond", "redirect", "hang", "drop", "garbage", "truncate",
    "malformed_json", "status_missing", "status_not_string", "huge_body",
    # Hostile answers: bodies and headers a registry under someone else's
    # control could send (see "Hostile answers" in README.md).
    "deep_json", "nul_garbage", "invalid_utf8", "tag_pages", "trickle",
)
# How a streamed body is delimited: Content-Length, chunked, or the end of
# the connection (no length at all).
FRAMINGS = ("length", "chunked", "close")
# Parameters of the hostile actions (and huge_body): name -> check.
# ("int", lo, hi), ("number", lo, hi), ("choice", values), "bool", "str", "hex".
HOSTILE_PARAMETERS = {
    "deep_json": {"depth": ("int", 1, 10 ** 9), "nest": ("choice", ("array", "object")),
                  "closed": "bool", "member": "str", "status": "str"},
    "nul_garbage": {"where": ("choice", ("after", "in_string", "escaped")),
                    "garbage": "str", "status": "str", "tag": "str"},
    "invalid_utf8": {"sequence": "hex", "where": ("choice", ("status", "detail", "key")),
                     "status": "str", "tag": "str"},
    "huge_body": {"bytes": ("int", 0, 1 << 40), "status": "str", "tag_length": ("int", 16, 128)},
    "tag_pages": {"pages": ("int", 1, 10 ** 6), "tags_per_page": ("int", 0, 10 ** 7),
                  "page_bytes": ("int", 0, 1 << 34), "tag_length": ("int", 16, 128),
                  "link": "str"},
    "trickle": {"interval_ms": ("number", 1, 3600 * 1000), "bytes": ("int", 1, 1 << 20),
                "seconds": ("number", 0, 10 ** 6), "stage": ("choice", ("body", "headers"))},
}
# Every hostile action also takes these (trickle answers with the model's
# code, so it has no "code" nor "framing").
HOSTILE_COMMON = {"code": ("int", 100, 599), "framing": ("choice", FRAMINGS)}
STREAM_CHUNK = 65536
MATCH_KEYS = ("method", "kind", "path", "import_type")
IMPORT_PREFIX = "/gitlab/v1/import/"
TAGS_ROUTE = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
HISTORY_LENGTH = 50


class UserError(Exception):
    """A bad control request or a bad command line: reported, never fatal."""


class Conflict(Exception):
    """A control request that does not fit the repository's state (409)."""


# ---------------------------------------------------------------------------
# DER, RSA and JWT (RS256) in pure Python
# ---------------------------------------------------------------------------

RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
# DER of DigestInfo{sha256, NULL} up to the digest itself (RFC 8017 §9.2).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def der_read(data, pos):
    """Read the TLV at pos; return (tag, content_start, content_end)."""
    if pos + 2 > len(data):
        raise UserError("DER: truncated element")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise UserError("DER: bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise UserError("DER: element longer than its container")
    return tag, pos, pos + length


def der_children(data, start, end):
    """The elements inside a constructed value: [(tag, start, end, tlv_start)]."""
    children, pos = [], start
    while pos < end:
        tag, cstart, cend = der_read(data, pos)
        children.append((tag, cstart, cend, pos))
        pos = cend
    return children


def der_encode(tag, content):
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def der_integer(value):
    # A leading zero keeps a positive value with its high bit set positive.
    return der_encode(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_uint(data, element):
    tag, start, end, _ = element
    if tag != 0x02:
        raise UserError("DER: expected an INTEGER")
    return int.from_bytes(data[start:end], "big")


def rsa_spki_der(n, e):
    """The canonical DER SubjectPublicKeyInfo of an RSA key (what openssl writes)."""
    algorithm = der_encode(0x30, der_encode(0x06, RSA_ENCRYPTION_OID) + b"\x05\x00")
    key = der_encode(0x30, der_integer(n) + der_integer(e))
    return der_encode(0x30, algorithm + der_encode(0x03, b"\x00" + key))


def rsa_from_pkcs1_public(der):
    _, start, end = der_read(der, 0)
    items = der_children(der, start, end)
    return der_uint(der, items[0]), der_uint(der, items[1])


def rsa_from_spki(der):
    _, start, end = der_read(der, 0)
    algorithm, bits = der_children(der, start, end)[:2]
    oid = der_children(der, algorithm[1], algorithm[2])[0]
    if der[oid[1]:oid[2]] != RSA_ENCRYPTION_OID:
        raise UserError("the public key is not an RSA key")
    if bits[0] != 0x03 or der[bits[1]] != 0:
        raise UserError("DER: bad BIT STRING in SubjectPublicKeyInfo")
    return rsa_from_pkcs1_public(der[bits[1] + 1:bits[2]])


def rsa_from_pkcs1_private(der):
    _, start, end = der_read(der, 0)
    items = der_children(der, start, end)  # version, n, e, d, ...
    return der_uint(der, items[1]), der_uint(der, items[2])


def rsa_from_pkcs8(der):
    _, start, end = der_read(der, 0)
    items = der_children(der, start, end)  # version, algorithm, OCTET STRING
    oid = der_children(der, items[1][1], items[1][2])[0]
    if der[oid[1]:oid[2]] != RSA_ENCRYPTION_OID:
        raise UserError("the private key is not an RSA key")
    return rsa_from_pkcs1_private(der[items[2][1]:items[2][2]])


def spki_from_certificate(der):
    """The raw SubjectPublicKeyInfo element of an X.509 certificate."""
    _, start, end = der_read(der, 0)
    tbs = der_children(der, start, end)[0]
    fields = der_children(der, tbs[1], tbs[2])
    if fields and fields[0][0] == 0xA0:  # explicit [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    spki = fields[5]
    return der[spki[3]:spki[2]]


class RsaPublicKey:
    def __init__(self, n, e, spki):
        self.n, self.e, self.spki = n, e, spki
        self.size = (n.bit_length() + 7) // 8
        self.kid = libtrust_key_id(spki)


def libtrust_key_id(spki_der):
    """Docker's libtrust key id: SHA-256 of the DER SubjectPublicKeyInfo,
    first 30 bytes, base32 without padding, 12 groups of 4 joined by ':'."""
    encoded = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode()
    encoded = encoded.rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def load_rsa_public_key(path):
    """Accepts a PEM public key (SPKI or PKCS#1), certificate, or unencrypted
    private key (PKCS#8 or PKCS#1): the tests can then hand the simulator the
    same file the extension signs with."""
    with open(path, encoding="ascii", errors="replace") as handle:
        text = handle.read()
    for kind, body in PEM_BLOCK.findall(text):
        der = base64.b64decode("".join(body.split()))
        if kind == "PUBLIC KEY":
            n, e = rsa_from_spki(der)
            return RsaPublicKey(n, e, der)
        if kind == "CERTIFICATE":
            spki = spki_from_certificate(der)
            n, e = rsa_from_spki(spki)
            return RsaPublicKey(n, e, spki)
        readers = {"RSA PUBLIC KEY": rsa_from_pkcs1_public,
                   "PRIVATE KEY": rsa_from_pkcs8,
                   "RSA PRIVATE KEY": rsa_from_pkcs1_private}
        if kind in readers:
            n, e = readers[kind](der)
            return RsaPublicKey(n, e, rsa_spki_der(n, e))
    raise UserError(f"{path}: no RSA public key, certificate or unencrypted private key")


def rs256_signature_valid(key, message, signature):
    """RSASSA-PKCS1-v1_5 with SHA-256: the decrypted signature must equal the
    exact expected encoding (no lenient parsing of the padding)."""
    if len(signature) != key.size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    encoded = pow(s, key.e, key.n).to_bytes(key.size, "big")
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    padding = key.size - len(digest_info) - 3
    if padding < 8:
        return False
    expected = b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_decode(text):
    if not B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    pass


def split_token(token):
    """(header, claims, signing input, signature) without any verification."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token: expected 3 parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as error:
        raise TokenError(f"malformed token: {error}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("malformed token: header and claims must be objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def required_access(kind, path):
    """The access entry a request needs, or None."""
    if kind in ("start", "status", "cancel"):
        return {"type": "registry", "name": "import", "action": "*"}
    if kind == "tags":
        return {"type": "repository", "name": path, "action": "pull"}
    return None


def access_granted(claims, needed):
    for entry in claims.get("access") or []:
        if (isinstance(entry, dict) and entry.get("type") == needed["type"]
                and entry.get("name") == needed["name"]
                and isinstance(entry.get("actions"), list)
                and needed["action"] in entry["actions"]):
            return True
    return False


class TokenVerifier:
    def __init__(self, key, issuer, audience, leeway):
        self.key, self.issuer, self.audience, self.leeway = key, issuer, audience, leeway

    def verify(self, token, needed):
        """Return the claims of a valid token; raise TokenError otherwise."""
        header, claims, signing_input, signature = split_token(token)
        if header.get("alg") != "RS256":
            raise TokenError(f"unsupported alg {header.get('alg')!r}")
        if header.get("kid") != self.key.kid:
            raise TokenError(f"unknown kid {header.get('kid')!r}")
        if not rs256_signature_valid(self.key, signing_input, signature):
            raise TokenError("invalid signature")
        if claims.get("iss") != self.issuer:
            raise TokenError(f"wrong issuer {claims.get('iss')!r}")
        if not isinstance(claims.get("aud"), str) or claims["aud"] != self.audience:
            raise TokenError(f"wrong audience {claims.get('aud')!r}")
        self.check_times(claims)
        if needed and not access_granted(claims, needed):
            raise TokenError(f"insufficient access: need {needed['type']}:"
                             f"{needed['name']}:{needed['action']}")
        return claims

    def check_times(self, claims):
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise TokenError("missing or non-numeric exp")
        if now > exp + self.leeway:
            raise TokenError("token expired")
        if nbf is not None:
            if not isinstance(nbf, (int, float)) or isinstance(nbf, bool):
                raise TokenError("non-numeric nbf")
            if now + self.leeway < nbf:
                raise TokenError("token not yet valid")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def error_envelope(code, message, detail=None):
    return {"errors": [{"code": code, "message": message, "detail": detail}]}


def quote_path(path):
    """Escape a repository path per segment for use in a URL."""
    return "/".join(urllib.parse.quote(segment, safe="") for segment in path.split("/"))


def split_repository_path(escaped):
    """Unescape each segment; None when a segment is empty (no such route)."""
    segments = [urllib.parse.unquote(segment) for segment in escaped.split("/")]
    if not segments or any(segment == "" for segment in segments):
        return None
    return "/".join(segments)


def as_bool(value, field):
    if value in (True, False, 0, 1):
        return bool(value)
    raise UserError(f"{field} must be a boolean")


def as_seconds(value, field):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise UserError(f"{field} must be a number >= 0")
    return float(value)


class Answer:
    """What the registry model decided: code, JSON body, extra headers."""

    def __init__(self, code, body=None, headers=None):
        self.code, self.body, self.headers = code, body, headers or {}


class Body:
    """A body of known length produced piece by piece, so a huge or deeply
    nested answer is streamed and never held in memory whole."""

    def __init__(self, length, pieces):
        self.length, self.pieces = length, pieces

    @classmethod
    def of(cls, *segments):
        """Segments are bytes or (bytes, repeat count)."""
        parts = [(s, 1) if isinstance(s, bytes) else s for s in segments]
        parts = [(data, count) for data, count in parts if data and count > 0]

        def pieces():
            for data, count in parts:
                per = max(1, STREAM_CHUNK // len(data))
                block = data * min(per, count)
                while count > 0:
                    take = min(per, count)
                    yield block if take == per else data * take
                    count -= take
        return cls(sum(len(data) * count for data, count in parts), pieces())


def tag_name(prefix, index, length):
    """Unique, sorted, ASCII tag names of a fixed length."""
    return f"{prefix}{index:07d}".ljust(length, "x")


def tag_list_body(name, prefix, count, length):
    """{"name": ..., "tags": [count names]} as a streamed Body."""
    head = b'{"name": ' + json.dumps(name).encode() + b', "tags": ['
    tail = b"]}"
    total = len(head) + len(tail) + count * (length + 2) + max(0, count - 1) * 2

    def pieces():
        yield head
        for start in range(0, count, 1024):
            names = ", ".join(f'"{tag_name(prefix, i, length)}"'
                              for i in range(start, min(count, start + 1024)))
            yield ((", " if start else "") + names).encode()
        yield tail
    return Body(total, pieces())


def fill_template(template, values):
    """Replace {name} placeholders (no str.format: URLs may hold braces)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


# ---------------------------------------------------------------------------
# Repository model
# ---------------------------------------------------------------------------

class Repository:
    def __init__(self, path, exists=True, native=False, tags=(), outcomes=None,
                 seconds=None):
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.exists = exists
        self.native = native
        self.tags = sorted(set(tags))
        self.status = None          # None = the new registry has no record yet
        self.detail = ""
        self.step = None            # PRE or FINAL while a step runs
        self.step_outcome = None    # how the running step will end
        self.step_generation = 0    # bumped whenever a step ends or is forgotten
        self.step_started_at = None
        self.step_ends_at = None
        self.attempts = {PRE: 0, FINAL: 0}
        self.outcomes = outcomes or {PRE: [], FINAL: []}
        self.seconds = seconds or {PRE: None, FINAL: None}
        self.last_pre_result = None  # complete / failed / canceled
        self.pre_canceled_at = None  # monotonic clock, for the cool-down
        self.created_at = self.updated_at = time.time()
        self.history = collections.deque(maxlen=HISTORY_LENGTH)

    @property
    def known(self):
        return self.exists or self.native or self.status is not None

    @property
    def reported_status(self):
        return "native" if self.native else self.status

    def set_status(self, status, detail, cause):
        self.status, self.detail = status, detail
        self.updated_at = time.time()
        self.history.append({"time": self.updated_at, "status": status, "cause": cause})

    def status_body(self):
        return {"name": self.name, "path": self.path,
                "status": self.reported_status, "detail": self.detail}

    def next_outcome(self, step):
        """Outcome lists are consumed one per attempt; the last one repeats."""
        script = self.outcomes[step]
        self.attempts[step] += 1
        if not script:
            return "complete"
        return script[min(self.attempts[step], len(script)) - 1]

    def to_json(self, with_tags=True):
        data = {
            "path": self.path, "name": self.name, "exists": self.exists,
            "native": self.native, "status": self.reported_status,
            "detail": self.detail, "running_step": self.step,
            "step_outcome": self.step_outcome,
            "step_started_at": self.step_started_at,
            "attempts": dict(self.attempts),
            "pre_import_outcomes": list(self.outcomes[PRE]),
            "import_outcomes": list(self.outcomes[FINAL]),
            "pre_import_seconds": self.seconds[PRE],
            "import_seconds": self.seconds[FINAL],
            "last_pre_import_result": self.last_pre_result,
            "tags_count": len(self.tags),
            "created_at": self.created_at, "updated_at": self.updated_at,
            "history": list(self.history),
        }
        if with_tags:
            data["tags"] = list(self.tags)
        return data


REPOSITORY_FIELDS = ("path", "exists", "native", "tags", "pre_import_outcomes",
                     "import_outcomes", "pre_import_seconds", "import_seconds",
                     "status")


def repository_from_spec(spec):
    """Build a Repository from a control-API description, validating it."""
    if not isinstance(spec, dict):
        raise UserError("each repository must be an object")
    unknown = set(spec) - set(REPOSITORY_FIELDS)
    if unknown:
        raise UserError(f"unknown repository fields: {sorted(unknown)}")
    path = spec.get("path")
    if not isinstance(path, str) or split_repository_path(path) != path:
        raise UserError(f"bad repository path {path!r}")
    tags = spec.get("tags", 0)
    if isinstance(tags, int) and not isinstance(tags, bool) and tags >= 0:
        tags = [f"tag{i:06d}" for i in range(tags)]
    elif not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
        raise UserError(f"{path}: tags must be a count or a list of names")
    outcomes = {}
    for step, field in ((PRE, "pre_import_outcomes"), (FINAL, "import_outcomes")):
        script = spec.get(field) or []
        if not isinstance(script, list) or any(o not in OUTCOMES for o in script):
            raise UserError(f"{path}: {field} must be a list of {list(OUTCOMES)}")
        outcomes[step] = script
    seconds = {PRE: as_seconds(spec.get("pre_import_seconds"), "pre_import_seconds"),
               FINAL: as_seconds(spec.get("import_seconds"), "import_seconds")}
    repo = Repository(path, as_bool(spec.get("exists", True), "exists"),
                      as_bool(spec.get("native", False), "native"), tags,
                      outcomes, seconds)
    preset = spec.get("status")
    if preset is not None:
        if preset not in PRESET_STATUSES:
            raise UserError(f"{path}: status must be one of {list(PRESET_STATUSES)}")
        repo.set_status(preset, "preset by the test", "preset")
        # Any import_* status means a pre-import completed before it.
        repo.last_pre_result = preset[len("pre_import_"):] if preset.startswith("pre_") \
            else "complete"
    return repo


# ---------------------------------------------------------------------------
# Notifications
# ---------------------------------------------------------------------------

class Notifier:
    """Sends end-of-step notifications from worker threads, once, no retry."""

    def __init__(self, app, workers, timeout):
        self.app = app
        self.timeout = timeout
        self.queue = collections.deque()
        self.lock = threading.Condition()
        self.log = []
        self.sequence = itertools.count(1)
        self.epoch = 0      # bumped by a reset: queued items of older epochs are dropped
        self.pending = 0    # queued + being delivered, for the shutdown drain
        self.counts = collections.Counter()
        self.lose_next = 0
        self.lose_rate = 0.0
        self.random = random.Random()
        for index in range(workers):
            threading.Thread(target=self.work, name=f"notifier-{index}", daemon=True).start()

    def set_faults(self, spec):
        if not isinstance(spec, dict) or not set(spec) <= {"lose", "lose_rate", "seed"}:
            raise UserError("notification faults: expected {lose} or {lose_rate, seed}")
        lose, rate = spec.get("lose", 0), spec.get("lose_rate", 0.0)
        if isinstance(lose, bool) or not isinstance(lose, int) or lose < 0:
            raise UserError("lose must be an integer >= 0")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise UserError("lose_rate must be between 0 and 1")
        with self.lock:
            self.lose_next, self.lose_rate = lose, float(rate)
            self.random = random.Random(spec.get("seed"))

    def faults_json(self):
        with self.lock:
            return {"lose": self.lose_next, "lose_rate": self.lose_rate}

    def submit(self, repo_body, cause):
        """Queue a notification; called with the registry lock held, so it only
        decides and enqueues: delivery happens in a worker thread."""
        url, secret = self.app.config["notify_url"], self.app.config["notify_secret"]
        entry = dict(repo_body, seq=None, time=time.time(), cause=cause, url=None,
                     outcome=None, delivered=False, http_status=None, error=None,
                     authorization_sent=False)
        with self.lock:
            entry["seq"] = next(self.sequence)
            if not url:
                self.record(entry, "no_url")
                return
            entry["url"] = notification_url(url, repo_body["path"])
            if self.lose_next > 0 or (self.lose_rate and self.random.random() < self.lose_rate):
                self.lose_next = max(0, self.lose_next - 1)
                self.record(entry, "lost", error="lost by a notification fault")
                return
            self.queue.append((self.epoch, entry, secret))
            self.pending += 1
            self.lock.notify()

    def record(self, entry, outcome, **fields):
        # Caller holds self.lock.
        entry.update(fields, outcome=outcome, delivered=(outcome == "delivered"))
        self.log.append(entry)
        self.counts[outcome] += 1

    def work(self):
        kept = {}   # this thread's open connections, by receiver address
        while True:
            with self.lock:
                while not self.queue:
                    self.lock.wait()
                epoch, entry, secret = self.queue.popleft()
            if epoch == self.epoch:
                outcome, fields = deliver(entry, secret, self.timeout, kept)
                with self.lock:
                    if epoch == self.epoch:
                        self.record(entry, outcome, **fields)
            with self.lock:
                self.pending -= 1
                self.lock.notify_all()

    def drain(self, timeout):
        """Wait until every queued notification was attempted (shutdown)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def entries(self):
        with self.lock:
            return list(self.log)

    def clear(self):
        with self.lock:
            self.log.clear()

    def reset(self):
        with self.lock:
            self.epoch += 1
            self.pending -= len(self.queue)
            self.queue.clear()
            self.log.clear()
            self.counts.clear()
            self.lose_next, self.lose_rate = 0, 0.0
            self.random = random.Random()
            self.lock.notify_all()


def notification_url(base, path):
    """The configured URL with the repository path appended after one '/'.
    Only characters that cannot appear in a request line are escaped."""
    parts = urllib.parse.urlsplit(base)
    full_path = parts.path.rstrip("/") + "/" + urllib.parse.quote(path, safe="/")
    return urllib.parse.urlunsplit(parts._replace(path=full_path))


def deliver(entry, secret, timeout, kept):
    """One PUT; returns (outcome, fields for the log). Like an HTTP client
    (the registry's included), a sender keeps its connection for the next
    notification, and sends on a new one when the receiver has closed the
    kept one: found closed before the send, or the send refused. Once sent,
    a PUT is never sent again, even when its connection then breaks."""
    parts = urllib.parse.urlsplit(entry["url"])
    if parts.scheme not in ("http", "https"):
        return "failed", {"error": f"unsupported scheme {parts.scheme!r}"}
    body = json.dumps({key: entry[key] for key in ("name", "path", "status", "detail")}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"registry-simulator/{VERSION}"}
    if secret is not None:
        headers["Authorization"] = secret
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    address = (parts.scheme, parts.hostname, parts.port)
    connection = still_open(kept.pop(address, None))
    try:
        if connection is None or not sent(connection, target, body, headers):
            connection = connect(parts, timeout)
            connection.request("PUT", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(1 << 20)
    except (OSError, http.client.HTTPException) as error:
        if connection is not None:
            connection.close()
        return "failed", {"error": f"{type(error).__name__}: {error}",
                          "authorization_sent": secret is not None}
    if response.isclosed() and not response.will_close:   # read whole, and may carry more
        kept[address] = connection
    else:
        connection.close()
    outcome = "delivered" if 200 <= response.status < 300 else "failed"
    return outcome, {"http_status": response.status,
                     "authorization_sent": secret is not None,
                     "error": None if outcome == "delivered" else f"answer {response.status}"}


def still_open(connection):
    """A kept connection, or None when the receiver has closed it meanwhile
    (its end of file, or anything else it did not ask for, waits unread)."""
    if connection is None:
        return None
    if connection.sock is None or select.select([connection.sock], [], [], 0)[0]:
        connection.close()
        return None
    return connection


def sent(connection, target, body, headers):
    """The PUT sent on a kept connection; False, the connection closed, when
    the receiver had closed it (so nothing reached it)."""
    try:
        connection.request("PUT", target, body=body, headers=headers)
        return True
    except ConnectionError:
        connection.close()
        return False


def connect(parts, timeout):
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


# ---------------------------------------------------------------------------
# The registry: repositories, steps and their answers
# ---------------------------------------------------------------------------

class Registry:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.repos = {}
        self.running = 0
        self.peak_running = 0
        self.steps_started = collections.Counter()
        self.steps_ended = collections.Counter()
        # Step deadlines: one timer thread for all steps, so thousands of
        # running steps cost heap entries, not threads.
        self.timers = []
        self.timer_sequence = itertools.count()
        self.timer_wakeup = threading.Condition(self.lock)
        threading.Thread(target=self.run_timers, name="step-timers", daemon=True).start()

    # -- lookup -------------------------------------------------------------

    def lookup(self, path):
        """The repository, created on the old registry under --auto-create."""
        repo = self.repos.get(path)
        if repo is None and self.app.config["auto_create"]:
            repo = self.repos[path] = Repository(path)
        return repo

    def too_many_requests(self, code, message, detail):
        headers = {}
        if self.app.config["retry_after"] is not None:
            headers["Retry-After"] = str(self.app.config["retry_after"])
        return Answer(429, error_envelope(code, message, detail), headers)

    # -- start (PUT) ----------------------------------------------------------

    def start(self, path, import_type):
        if import_type not in (PRE, FINAL):
            return Answer(400, error_envelope(
                "INVALID_QUERY_PARAMETER_VALUE", "invalid query parameter value",
                "the 'import_type' query parameter must be set to one of: pre, final"))
        with self.lock:
            repo = self.lookup(path)
            if repo is None or not (repo.exists or repo.native):
                return name_unknown(path)
            limit = self.app.config["max_imports"]
            if limit and self.running >= limit:
                return self.too_many_requests("IMPORT_RATE_LIMIT", "failed to begin (pre)import",
                                              f"repository path {path}")
            if repo.native or repo.status == "import_complete":
                return Answer(200, repo.status_body())
            if repo.step == PRE:
                return Answer(425, error_envelope(
                    "PRE_IMPORT_IN_PROGRESS", "request cannot happen concurrently with pre import",
                    f"repository path {path}"))
            if repo.step == FINAL:
                return Answer(409, error_envelope(
                    "IMPORT_IN_PROGRESS", "request cannot happen concurrently with import",
                    f"repository path {path}"))
            if self.in_cooldown(repo):
                return self.too_many_requests(
                    "IMPORT_REPOSITORY_NOT_READY", "failed to begin (pre)import",
                    f"repository path {path}: a canceled pre import is still winding down")
            if import_type == FINAL and repo.last_pre_result != "complete":
                return pre_import_missing(repo)
            self.begin_step(repo, import_type)
            return Answer(202, repo.status_body())

    def in_cooldown(self, repo):
        cooldown = self.app.config["cancel_cooldown"]
        return (repo.pre_canceled_at is not None
                and time.monotonic() - repo.pre_canceled_at < cooldown)

    def begin_step(self, repo, step):
        # Caller holds self.lock.
        outcome = repo.next_outcome(step)
        seconds = repo.seconds[step]
        if seconds is None:
            seconds = self.app.config[f"{STEP_PREFIX[step]}_seconds"]
        repo.step, repo.step_outcome = step, outcome
        repo.step_generation += 1
        repo.step_started_at = time.time()
        repo.step_ends_at = None if outcome == "hang" else repo.step_started_at + seconds
        repo.set_status(f"{STEP_PREFIX[step]}_in_progress",
                        f"{STEP_PREFIX[step].replace('_', ' ')} in progress", "start")
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        self.steps_started[step] += 1
        if outcome != "hang":  # a stuck import never ends by itself
            entry = (time.monotonic() + seconds, next(self.timer_sequence),
                     repo, repo.step_generation)
            heapq.heappush(self.timers, entry)
            self.timer_wakeup.notify()

    def run_timers(self):
        with self.lock:
            while True:
                now = time.monotonic()
                while self.timers and self.timers[0][0] <= now:
                    _, _, repo, generation = heapq.heappop(self.timers)
                    # A stale entry (step canceled, repository replaced) is ignored,
                    # so a canceled step is never overwritten by its later result.
                    if (repo.step_generation == generation and repo.step is not None
                            and self.repos.get(repo.path) is repo):
                        self.end_step(repo, repo.step_outcome, "end", None)
                timeout = self.timers[0][0] - now if self.timers else None
                self.timer_wakeup.wait(timeout)

    def end_step(self, repo, outcome, cause, detail):
        """Finish the running step: status, bookkeeping, notification.
        Caller holds self.lock."""
        step = repo.step
        prefix = STEP_PREFIX[step]
        status = f"{prefix}_{outcome}"
        if detail is None:
            detail = {"complete": f"{prefix.replace('_', ' ')} completed successfully",
                      "failed": f"{prefix.replace('_', ' ')} failed: simulated failure",
                      "canceled": f"{prefix.replace('_', ' ')} canceled"}[outcome]
        repo.step = repo.step_outcome = repo.step_ends_at = None
        repo.step_generation += 1
        self.running -= 1
        self.steps_ended[status] += 1
        if step == PRE:
            repo.last_pre_result = outcome
        self.set_final_status(repo, status, detail, cause)

    def set_final_status(self, repo, status, detail, cause):
        # Caller holds self.lock.
        repo.set_status(status, detail, cause)
        if status == "pre_import_canceled":
            repo.pre_canceled_at = time.monotonic()
        self.app.notifier.submit(repo.status_body(), cause)

    # -- status (GET) -------------------------------------------------------------

    def status(self, path):
        with self.lock:
            repo = self.lookup(path)
            # Known on the old registry but never imported: the new registry
            # has no record of it yet.
            if repo is None or not (repo.native or repo.status is not None):
                return name_unknown(path)
            return Answer(200, repo.status_body())

    # -- cancel (DELETE) ------------------------------------------------------------

    def cancel(self, path, force):
        with self.lock:
            repo = self.lookup(path)
            if repo is None or not (repo.native or repo.status is not None):
                return name_unknown(path)
            if repo.native or (repo.step is None and not force):
                return Answer(400, error_envelope(
                    "IMPORT_CANNOT_BE_CANCELED", "failed to cancel (pre)import",
                    f"repository path {path} previous migration status: "
                    f"{repo.reported_status}"))
            if repo.step is not None:
                cause = "forced_cancel" if force else "cancel"
                self.end_step(repo, "canceled", cause, "canceled by request")
            else:
                # Forced cancel of an idle repository: it is reset to canceled.
                status = ("pre_import_canceled" if repo.status == "pre_import_complete"
                          else "import_canceled")
                if status == "pre_import_canceled":
                    repo.last_pre_result = "canceled"
                self.set_final_status(repo, status, "canceled by forced request",
                                      "forced_cancel")
            return Answer(202, repo.status_body())

    # -- tags (GET /v2) -------------------------------------------------------------

    def tags(self, path, query):
        with self.lock:
            repo = self.lookup(path)
            if repo is None or not (repo.exists or repo.native):
                return name_unknown(path)
            tags = repo.tags
        if self.app.config["ignore_tags_n"] or "n" not in query:
            return Answer(200, {"name": path, "tags": list(tags)})
        try:
            n = int(query["n"])
            if n < 0:
                raise ValueError
        except ValueError:
            return Answer(400, error_envelope("PAGINATION_NUMBER_INVALID",
                                              "invalid number of results requested",
                                              {"n": query["n"]}))
        last = query.get("last")
        remaining = [tag for tag in tags if last is None or tag > last]
        if n == 0:  # like the old registries: no limit
            return Answer(200, {"name": path, "tags": remaining})
        page, headers = remaining[:n], {}
        if len(remaining) > n:
            link = (f"/v2/{quote_path(path)}/tags/list?n={n}"
                    f"&last={urllib.parse.quote(page[-1], safe='')}")
            headers["Link"] = f'<{link}>; rel="next"'
        return Answer(200, {"name": path, "tags": page}, headers)

    # -- control operations -----------------------------------------------------------

    def add(self, specs):
        repos = [repository_from_spec(spec) for spec in specs]  # validate all first
        with self.lock:
            for repo in repos:
                self.forget(self.repos.get(repo.path))
                self.repos[repo.path] = repo
        return len(repos)

    def forget(self, repo):
        """Drop a repository's running step without any notification."""
        # Caller holds self.lock.
        if repo is not None and repo.step is not None:
            repo.step = None
            repo.step_generation += 1
            self.running -= 1

    def remove(self, path):
        with self.lock:
            repo = self.repos.pop(path, None)
            self.forget(repo)
            return repo is not None

    def control_end_step(self, path, outcome, cause, detail):
        """Registry-initiated end of the running step (cancel or finish)."""
        with self.lock:
            repo = self.repos.get(path)
            if repo is None:
                raise LookupError(f"unknown repository {path}")
            if repo.step is None:
                raise Conflict(f"{path}: no step running")
            self.end_step(repo, outcome, cause, detail)
            return repo.status_body()

    def cancel_all_running(self, cause, detail):
        """Shutdown: like the real registry, cancel our own running steps."""
        with self.lock:
            running = [repo for repo in self.repos.values() if repo.step is not None]
            for repo in running:
                self.end_step(repo, "canceled", cause, detail)
            return len(running)

    def reset(self):
        with self.lock:
            for repo in self.repos.values():
                self.forget(repo)
            self.repos.clear()
            self.timers.clear()
            self.running = self.peak_running = 0
            self.steps_started.clear()
            self.steps_ended.clear()

    def repository_json(self, path):
        with self.lock:
            repo = self.repos.get(path)
            return None if repo is None else repo.to_json()

    def state_json(self, with_repositories):
        with self.lock:
            statuses = collections.Counter(
                repo.reported_status or "none" for repo in self.repos.values())
            data = {"repositories_count": len(self.repos),
                    "statuses": dict(statuses),
                    "running_steps": self.running,
                    "peak_running_steps": self.peak_running,
                    "steps_started": dict(self.steps_started),
                    "steps_ended": dict(self.steps_ended)}
            if with_repositories:
                data["repositories"] = {path: repo.to_json(with_tags=False)
                                        for path, repo in self.repos.items()}
            return data


def name_unknown(path):
    return Answer(404, error_envelope("NAME_UNKNOWN", "repository name not known to registry",
                                      {"name": path}))


def pre_import_missing(repo):
    """424: the three reasons a final import needs a (new) pre-import."""
    reasons = {
        "failed": ("PRE_IMPORT_FAILED", "a previous pre import failed"),
        "canceled": ("PRE_IMPORT_CANCELED", "a previous pre import was canceled"),
    }
    code, message = reasons.get(repo.last_pre_result, (
        "PRE_IMPORT_REQUIRED", "a previous successful pre import is required"))
    return Answer(424, error_envelope(code, message, f"repository path {repo.path}"))


# ---------------------------------------------------------------------------
# Fault rules
# ---------------------------------------------------------------------------

def validate_rule(rule):
    if not isinstance(rule, dict) or not set(rule) <= {"match", "times", "action"}:
        raise UserError("a rule is {match, times, action}")
    match = rule.get("match") or {}
    if not isinstance(match, dict) or not set(match) <= set(MATCH_KEYS):
        raise UserError(f"match keys are {list(MATCH_KEYS)}")
    times = rule.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise UserError("times must be an integer >= 0 or null")
    action = rule.get("action")
    if not isinstance(action, dict) or action.get("type") not in FAULT_TYPES:
        raise UserError(f"action.type must be one of {list(FAULT_TYPES)}")
    if action["type"] == "redirect" and not isinstance(action.get("location"), str):
        raise UserError("a redirect needs a location")
    if action["type"] == "respond" and not isinstance(action.get("code"), int):
        raise UserError("respond needs an integer code")
    if "headers" in action and not isinstance(action["headers"], dict):
        raise UserError("headers must be an object")
    if action["type"] in HOSTILE_PARAMETERS:
        validate_hostile(action)
    return {"match": dict(match), "times": times, "action": dict(action), "hits": 0}


def validate_hostile(action):
    kind = action["type"]
    allowed = dict(HOSTILE_PARAMETERS[kind])
    if kind != "trickle":
        allowed.update(HOSTILE_COMMON)
    unknown = set(action) - set(allowed) - {"type", "headers"}
    if unknown:
        raise UserError(f"{kind}: unknown parameters {sorted(unknown)}; "
                        f"it takes {sorted(allowed)}")
    for name, check in allowed.items():
        value = action.get(name)
        if value is None:
            continue
        if check == "bool":
            ok = isinstance(value, bool)
        elif check == "str":
            ok = isinstance(value, str)
        elif check == "hex":
            try:
                ok = isinstance(value, str) and len(bytes.fromhex(value)) > 0
            except ValueError:
                ok = False
        elif check[0] == "choice":
            ok = value in check[1]
        else:
            types = int if check[0] == "int" else (int, float)
            ok = (isinstance(value, types) and not isinstance(value, bool)
                  and check[1] <= value <= check[2])
        if not ok:
            raise UserError(f"{kind}: bad {name} {value!r} (expected {check})")


class FaultRules:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def replace(self, rules):
        if not isinstance(rules, list):
            raise UserError("rules must be a list")
        checked = [validate_rule(rule) for rule in rules]
        with self.lock:
            self.rules = checked

    def extend(self, rules):
        if not isinstance(rules, list):
            raise UserError("rules must be a list")
        checked = [validate_rule(rule) for rule in rules]
        with self.lock:
            self.rules.extend(checked)

    def clear(self):
        with self.lock:
            self.rules = []

    def take(self, request):
        """The action of the first matching rule with times left, used once."""
        with self.lock:
            for rule in self.rules:
                if rule["times"] is not None and rule["times"] <= 0:
                    continue
                if all(matches(key, wanted, request) for key, wanted in rule["match"].items()):
                    if rule["times"] is not None:
                        rule["times"] -= 1
                    rule["hits"] += 1
                    return rule["action"]
        return None

    def to_json(self):
        with self.lock:
            return [dict(rule) for rule in self.rules]


def matches(key, wanted, request):
    value = request.get(key)
    if key == "method" and isinstance(wanted, str):
        return value == wanted.upper()
    return value == wanted


# ---------------------------------------------------------------------------
# Request log and counters
# ---------------------------------------------------------------------------

class Stats:
    def __init__(self, log_size):
        self.lock = threading.Lock()
        self.log = collections.deque(maxlen=log_size)
        self.sequence = itertools.count(1)
        self.by_kind = collections.defaultdict(collections.Counter)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.total = 0
        self.connections = 0

    def connection(self):
        with self.lock:
            self.connections += 1

    def begin(self, entry):
        """Log a request when it arrives (a hanging one shows up at once);
        its answer fields are filled in by end()."""
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            entry["seq"] = next(self.sequence)
            self.log.append(entry)

    def answered(self, entry, code, duration_ms):
        """Record the answer (None: none was sent) before it is written."""
        with self.lock:
            self.total += 1
            # Only values change, never keys: a concurrent JSON dump stays safe.
            entry.update(code=code, duration_ms=duration_ms, completed=True)
            self.by_kind[entry["kind"]]["none" if code is None else str(code)] += 1

    def leave(self):
        """The request is over, its answer written: no longer concurrent."""
        with self.lock:
            self.in_flight -= 1

    def entries(self, since):
        with self.lock:
            return [entry for entry in self.log if entry["seq"] > since]

    def clear_log(self):
        with self.lock:
            self.log.clear()

    def reset(self):
        with self.lock:
            self.log.clear()
            self.by_kind.clear()
            self.peak_in_flight = self.in_flight
            self.total = 0
            self.connections = 0

    def to_json(self):
        with self.lock:
            return {"requests": {kind: dict(codes) for kind, codes in self.by_kind.items()},
                    "requests_total": self.total,
                    "concurrent_requests": self.in_flight,
                    "connections_accepted": self.connections,
                    "peak_concurrent_requests": self.peak_in_flight}


# ---------------------------------------------------------------------------
# The application: configuration and the pieces above
# ---------------------------------------------------------------------------

RUNTIME_SETTINGS = {
    # name: validator; the settings a test may change with POST /_sim/config
    "pre_import_seconds": lambda v: as_seconds(v, "pre_import_seconds"),
    "import_seconds": lambda v: as_seconds(v, "import_seconds"),
    "max_imports": lambda v: int(v),
    "cancel_cooldown": lambda v: as_seconds(v, "cancel_cooldown"),
    "notify_url": lambda v: None if v in (None, "") else str(v),
    "notify_secret": lambda v: None if v is None else str(v),
    "auto_create": lambda v: as_bool(v, "auto_create"),
    "ignore_tags_n": lambda v: as_bool(v, "ignore_tags_n"),
    "retry_after": lambda v: None if v in (None, "") else str(v),
    "latency_ms": lambda v: as_seconds(v, "latency_ms"),
    "catch_all": lambda v: as_bool(v, "catch_all"),
}


class Application:
    def __init__(self, options):
        self.startup_config = {name: getattr(options, name) for name in RUNTIME_SETTINGS}
        self.config = dict(self.startup_config)
        self.options = options
        self.verifier = None
        if options.jwt_public_key:
            key = load_rsa_public_key(options.jwt_public_key)
            self.verifier = TokenVerifier(key, options.jwt_issuer, options.jwt_audience,
                                          options.jwt_leeway)
        self.stop_event = threading.Event()
        self.stopping = False
        self.stats = Stats(options.request_log_size)
        self.faults = FaultRules()
        self.notifier = Notifier(self, options.notify_workers, options.notify_timeout)
        self.registry = Registry(self)

    def configure(self, changes):
        if not isinstance(changes, dict) or not set(changes) <= set(RUNTIME_SETTINGS):
            raise UserError(f"settings are {sorted(RUNTIME_SETTINGS)}")
        try:
            checked = {name: RUNTIME_SETTINGS[name](value) for name, value in changes.items()}
        except (TypeError, ValueError) as error:
            raise UserError(str(error)) from None
        self.config.update(checked)

    def config_json(self):
        data = dict(self.config)
        data.pop("notify_secret")  # never echoed
        data["notify_secret_set"] = self.config["notify_secret"] is not None
        data["jwt"] = None if self.verifier is None else {
            "kid": self.verifier.key.kid, "issuer": self.verifier.issuer,
            "audience": self.verifier.audience, "leeway": self.verifier.leeway}
        return data

    def reset(self):
        self.registry.reset()
        self.faults.clear()
        self.notifier.reset()
        self.stats.reset()
        self.config = dict(self.startup_config)

    def shutdown(self, grace):
        """Cancel our own running steps, give their notifications a chance."""
        self.stopping = True
        canceled = self.registry.cancel_all_running("shutdown", "canceled: registry shutting down")
        self.notifier.drain(grace)
        self.stop_event.set()  # wakes hanging requests and latency sleeps
        return canceled

    def inspect_token(self, headers, kind, path):
        """Token facts for the request log; validity only with a key."""
        info = {"token_present": False, "token_valid": None, "token_error": None,
                "token_header": None, "claims": None}
        auth = headers.get("Authorization")
        if auth is None or not auth[:7].lower() == "bearer ":
            if auth is not None:
                info["token_error"] = "not a bearer token"
            elif self.verifier:
                info["token_error"] = "no token"
            if self.verifier:
                info["token_valid"] = False
            return info
        token = auth[7:].strip()
        info["token_present"] = True
        try:
            info["token_header"], info["claims"], _, _ = split_token(token)
        except TokenError as error:
            info["token_error"] = str(error)
        if self.verifier:
            try:
                self.verifier.verify(token, required_access(kind, path))
                info["token_valid"] = True
            except TokenError as error:
                info["token_valid"] = False
                info["token_error"] = str(error)
        return info


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def new_log_entry(**fields):
    """A request-log entry with every key present (filled in as it goes)."""
    entry = {"seq": None, "time": time.time(), "method": None, "raw_path": None,
             "query": None, "kind": None, "repository": None, "import_type": None,
             "user_agent": None, "host": None, "authorization": None, "fault": None,
             "code": None, "completed": False, "duration_ms": None,
             "token_present": False, "token_valid": None, "token_error": None,
             "token_header": None, "claims": None, "raw_request": None,
             "tls_client": None, "tls_error": None}
    entry.update(fields)
    return entry


def parse_route(method, raw_path):
    """(kind, repository path or None, needs trailing slash)."""
    if raw_path.startswith(IMPORT_PREFIX):
        rest = raw_path[len(IMPORT_PREFIX):]
        slash = rest.endswith("/")
        path = split_repository_path(rest[:-1] if slash else rest)
        kind = {"PUT": "start", "GET": "status", "DELETE": "cancel"}.get(method, "import_other")
        return (kind, path, not slash) if path else ("unknown", None, False)
    found = TAGS_ROUTE.match(raw_path)
    if found:
        path = split_repository_path(found.group("name"))
        return ("tags", path, False) if path and method == "GET" else ("unknown", path, False)
    if raw_path in ("/v2/", "/v2", "/gitlab/v1/", "/gitlab/v1"):
        return "base", None, False
    return "unknown", None, False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive: every answer has a Content-Length
    server_version = f"registry-simulator/{VERSION}"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = 120                   # idle keep-alive connections do not live forever

    @property
    def app(self):
        return self.server.app

    def version_string(self):
        return self.server_version

    def setup(self):
        self.tls_socket = None
        self.tls_client = None
        self.refused = False
        if not self.server.control_only:
            self.app.stats.connection()
        if self.server.tls_context is not None:
            self.start_tls()
        super().setup()

    def handle(self):
        if not self.refused:
            super().handle()

    def finish(self):
        try:
            super().finish()
        finally:
            if self.tls_socket is not None:
                self.tls_socket.close()

    # -- https -------------------------------------------------------------------------

    def start_tls(self):
        """The TLS handshake, in this connection's thread. A client that
        speaks plain HTTP to the https port gets what the registry (a Go
        server) answers, and its request is logged with its Authorization
        header; a failed handshake is logged with OpenSSL's reason."""
        raw = self.request
        raw.settimeout(10)
        try:
            first = raw.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first and first != b"\x16":  # not a TLS handshake record
            self.refused = True
            self.plain_http_on_tls(raw)
            return
        tls = self.server.tls_context.wrap_socket(raw, server_side=True,
                                                  do_handshake_on_connect=False)
        self.tls_socket = self.request = tls
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as error:
            self.refused = True
            reason = getattr(error, "reason", None) or str(error) or type(error).__name__
            self.log_connection_event("tls_failed", tls_error=reason)
            return
        self.tls_client = certificate_common_name(tls.getpeercert())

    def plain_http_on_tls(self, raw):
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        request_line = lines[0].split()
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.log_connection_event(
            "plain_http_on_tls", raw_request=lines[0][:200],
            method=request_line[0] if request_line else None,
            raw_path=request_line[1] if len(request_line) > 1 else None,
            host=headers.get("host"), user_agent=headers.get("user-agent"),
            authorization=headers.get("authorization"),
            token_present=headers.get("authorization", "")[:7].lower() == "bearer ")
        try:
            raw.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"
                        b"Client sent an HTTP request to an HTTPS server.\n")
        except OSError:
            pass

    def log_connection_event(self, kind, **fields):
        entry = new_log_entry(kind=kind, completed=True, **fields)
        self.app.stats.begin(entry)
        self.app.stats.answered(entry, None, 0.0)
        self.app.stats.leave()

    def parse_request(self):
        """A request line or header block that is not HTTP (a TLS handshake,
        garbage) is logged as kind "invalid" before the 400 goes out."""
        if super().parse_request():
            return True
        raw = bytes(self.raw_requestline or b"")[:200]
        self.log_connection_event("invalid", raw_request=raw.decode("latin-1"))
        return False

    def log_message(self, format, *args):
        if self.app.options.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        self.answer_code = None
        self.log_entry = None  # set for registry requests
        try:
            url = urllib.parse.urlsplit(self.path)
            if url.path.startswith("/_sim/"):
                self.handle_control(url)
            elif self.server.control_only:
                self.read_body()
                self.send_json(404, {"error": "this port serves the control API only"})
            else:
                self.handle_registry(url)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # a bug must not kill the connection silently
            traceback.print_exc()
            self.close_connection = True
            if self.answer_code is None:
                try:
                    self.send_json(500, {"error": "simulator bug, see its stderr"})
                except OSError:
                    pass

    # -- bodies ----------------------------------------------------------------------

    def read_body(self, limit=64 << 20):
        """Read the request body so the keep-alive connection stays in step."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise UserError("request body too large")
        return self.rfile.read(length) if length else b""

    def send_raw(self, code, body=b"", headers=None, content_type="application/json"):
        self.start_answer(code)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        no_body = code < 200 or code in (204, 304)
        if not no_body:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not no_body:
            self.wfile.write(body)

    def send_json(self, code, data, headers=None):
        body = b"" if data is None else json.dumps(data).encode()
        self.send_raw(code, body, headers, "application/json; charset=utf-8")

    def send_body(self, code, body, headers=None, framing="length",
                  content_type="application/json"):
        """Stream a Body with the given framing; the client may hang up at
        any point (its size cap), which ends the request."""
        if isinstance(body, bytes):
            body = Body.of(body)
        self.start_answer(code)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Type", content_type)
        if framing == "length":
            self.send_header("Content-Length", str(body.length))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")  # the end of the body is the close
        self.end_headers()
        for piece in body.pieces:
            if framing == "chunked":
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")

    # -- registry requests ----------------------------------------------------------

    def handle_registry(self, url):
        app = self.app
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        kind, path, needs_slash = parse_route(self.command, url.path)
        request = {"method": self.command, "kind": kind, "path": path,
                   "import_type": query.get("import_type"), "query": query}
        entry = new_log_entry(method=self.command, raw_path=url.path, query=url.query,
                              kind=kind, repository=path,
                              import_type=request["import_type"],
                              user_agent=self.headers.get("User-Agent"),
                              host=self.headers.get("Host"),
                              authorization=self.headers.get("Authorization"),
                              tls_client=self.tls_client)
        entry.update(app.inspect_token(self.headers, kind, path))
        app.stats.begin(entry)
        self.log_entry = entry
        try:
            self.read_body()
            self.registry_answer(url, query, request, needs_slash, entry)
        finally:
            self.finish_log()  # requests that got no answer (drop, hang, ...)
            app.stats.leave()

    def start_answer(self, code):
        """Write the status line, after completing the log entry: a client
        that reads the log right after its answer finds the code there."""
        self.answer_code = code
        self.finish_log()
        self.send_response(code)

    def finish_log(self):
        entry, self.log_entry = self.log_entry, None
        if entry is not None:
            self.app.stats.answered(entry, self.answer_code,
                                    round((time.time() - entry["time"]) * 1000, 3))

    def registry_answer(self, url, query, request, needs_slash, entry):
        app = self.app
        if app.stopping:
            self.close_connection = True
            return self.send_json(503, error_envelope("UNAVAILABLE", "registry shutting down"),
                                  {"Connection": "close"})
        if self.server.is_down():
            # A connection opened before the registry went down: closed
            # without an answer, so a client that retries on a fresh
            # connection finds it refused, as it would for a registry down.
            entry["fault"] = "down"
            self.close_connection = True
            return
        latency = app.config["latency_ms"]
        if latency:
            app.stop_event.wait(latency / 1000)
        action = app.faults.take(request)
        if action is not None:
            entry["fault"] = action["type"]
            if self.apply_fault(action, request):
                return
        if app.config["catch_all"]:
            # A catcher: whatever it is asked, a plausible, attractive answer.
            document = self.route_document(request, "import_complete", ["caught"])
            if "detail" in document:
                document["detail"] = "answered by a catcher"
            return self.send_json(200, document)
        if needs_slash:
            # The registry's router redirects to the route with its slash.
            location = url.path + "/" + (f"?{url.query}" if url.query else "")
            return self.send_json(301, None, {"Location": location})
        if app.verifier and not entry["token_valid"]:
            return self.send_json(401, error_envelope(
                "UNAUTHORIZED", "authentication required", entry["token_error"]),
                {"WWW-Authenticate": 'Bearer realm="registry-simulator",'
                                     f'service="{app.verifier.audience}",error="invalid_token"'})
        answer = self.model_answer(request, query)
        headers = dict(answer.headers)
        if request["kind"] == "tags" or url.path.startswith("/v2"):
            headers["Docker-Distribution-API-Version"] = "registry/2.0"
        self.send_json(answer.code, answer.body, headers)

    def model_answer(self, request, query):
        registry, kind, path = self.app.registry, request["kind"], request["path"]
        if kind == "start":
            return registry.start(path, query.get("import_type"))
        if kind == "status":
            return registry.status(path)
        if kind == "cancel":
            return registry.cancel(path, query.get("force", "").lower() in ("true", "1", "t"))
        if kind == "tags":
            return registry.tags(path, query)
        if kind == "base":
            return Answer(200, {})
        if kind == "import_other":
            return Answer(405, error_envelope("UNSUPPORTED", "method not allowed"),
                          {"Allow": "GET, PUT, DELETE"})
        return Answer(404, error_envelope("NOT_FOUND", "no such route", self.path))

    # -- faults -------------------------------------------------------------------------

    def apply_fault(self, action, request):
        """Carry out a fault; True when the request is finished by it."""
        kind = action["type"]
        if kind == "delay":
            self.app.stop_event.wait(float(action.get("ms", 0)) / 1000)
            return False
        handler = getattr(self, f"fault_{kind}")
        handler(action, request)
        return True

    def fault_respond(self, action, request):
        code = action["code"]
        body = action.get("body")
        if body is None:
            body = json.dumps(error_envelope("SIMULATED_FAULT", f"injected answer {code}"))
            content_type = "application/json"
        else:
            content_type = action.get("content_type") or (
                "application/json" if body.lstrip().startswith(("{", "[")) else "text/plain")
        self.send_raw(code, body.encode(), action.get("headers"), content_type)

    def fault_redirect(self, action, request):
        headers = dict(action.get("headers") or {}, Location=action["location"])
        self.send_raw(int(action.get("code", 302)), b"", headers, "text/plain")

    def fault_hang(self, action, request):
        # Never answer; each connection has its own thread, so only this one
        # waits. It ends early when the client gives up, freeing the thread.
        deadline = time.monotonic() + float(action.get("seconds", 3600))
        while not self.app.stop_event.is_set() and time.monotonic() < deadline:
            if self.client_gone(min(0.25, max(0.0, deadline - time.monotonic()))):
                break
        self.close_connection = True

    def client_gone(self, wait):
        readable, _, _ = select.select([self.connection], [], [], wait)
        if not readable:
            return False
        try:
            # The plain socket's recv: an https connection's SSLSocket refuses
            # MSG_PEEK, and only the end of the TCP stream matters here.
            if socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b"":
                return True
        except OSError:
            return True
        # Data pipelined behind the hanging request: keep waiting, without spinning.
        self.app.stop_event.wait(wait)
        return False

    def fault_drop(self, action, request):
        self.close_connection = True

    def fault_garbage(self, action, request):
        self.wfile.write(b"\x16\x03\x01 this is not HTTP \xff\xfe\x00\r\n\r\n")
        self.close_connection = True

    def fault_truncate(self, action, request):
        body = json.dumps(self.fake_status(request, "pre_import_complete")).encode()
        sent = body[:len(body) // 2]
        self.start_answer(int(action.get("code", 200)))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) + int(action.get("missing", 100))))
        self.end_headers()
        self.wfile.write(sent)
        self.close_connection = True

    def fault_malformed_json(self, action, request):
        self.send_raw(200, b'{"name": "oops", "status": <not json>', None, "application/json")

    def fault_status_missing(self, action, request):
        body = self.fake_status(request, None)
        del body["status"]
        self.send_json(200, body)

    def fault_status_not_string(self, action, request):
        self.send_json(200, self.fake_status(request, 42))

    def fault_huge_body(self, action, request):
        size = int(action.get("bytes", 10 << 20))
        code, framing = action.get("code", 200), action.get("framing", "length")
        if request["kind"] == "tags":
            # A tag list of about that size: many long tag names.
            length = action.get("tag_length", 100)
            head = len(json.dumps(request["path"] or "unknown")) + 16
            count = max(0, (size - head + 2) // (length + 4))
            body = tag_list_body(request["path"] or "unknown", "t", count, length)
        else:
            status = action.get("status", "pre_import_complete")
            head = json.dumps(self.fake_status(request, status))[:-1]
            head = (head + ', "padding": "').encode()
            tail = b'"}'
            padding = max(0, size - len(head) - len(tail))
            body = Body.of(head, (b"x", padding), tail)
        self.send_body(code, body, action.get("headers"), framing)

    # -- hostile answers ------------------------------------------------------------------

    MARK = "@@HOSTILE@@"

    def route_document(self, request, status, tags=None):
        """The JSON document the route normally answers: a tag list, or the
        status object (status, start and cancel answers carry it)."""
        if request["kind"] == "tags":
            return {"name": request["path"] or "unknown",
                    "tags": list(tags if tags is not None else ["latest", "v1"])}
        return self.fake_status(request, status)

    def hostile_document(self, request, action, replacement):
        """The route's document whose hostile string (the status, or the first
        tag) is replaced by raw bytes: replacement(value) -> bytes."""
        value = (action.get("tag", "latest") if request["kind"] == "tags"
                 else action.get("status", "import_complete"))
        doc = self.route_document(request, self.MARK, [self.MARK, "v1"])
        return json.dumps(doc).encode().replace(self.MARK.encode(), replacement(value))

    def send_hostile(self, action, body):
        self.send_body(action.get("code", 200), body, action.get("headers"),
                       action.get("framing", "length"))

    def fault_deep_json(self, action, request):
        depth = action.get("depth", 1_000_000)
        opening, inner, closing = ((b"[", b"", b"]") if action.get("nest", "array") == "array"
                                   else (b'{"a":', b"0", b"}"))
        deep = [(opening, depth), inner, (closing, depth if action.get("closed", True) else 0)]
        member = action.get("member")
        if member is None:
            segments = deep
        else:
            # A usable-looking document with the deep value as one more member.
            doc = self.route_document(request, action.get("status", "import_complete"))
            head = (json.dumps(doc)[:-1] + ", " + json.dumps(member) + ": ").encode()
            segments = [head, *deep, b"}"]
        self.send_hostile(action, Body.of(*segments))

    def fault_nul_garbage(self, action, request):
        where = action.get("where", "after")
        garbage = action.get("garbage", "garbage").encode()
        if where == "after":
            value = action.get("status", "import_complete")
            doc = self.route_document(request, value, [action.get("tag", "latest"), "v1"])
            body = json.dumps(doc).encode() + b"\0" + garbage
        else:
            nul = b"\0" if where == "in_string" else b"\\u0000"
            body = self.hostile_document(request, action,
                                         lambda value: value.encode() + nul + garbage)
        self.send_hostile(action, body)

    def fault_invalid_utf8(self, action, request):
        sequence = bytes.fromhex(action.get("sequence", "ff"))
        where = action.get("where", "status")
        if where == "status":
            body = self.hostile_document(request, action,
                                         lambda value: value.encode() + sequence)
        else:
            status = action.get("status", "import_complete")
            doc = self.route_document(request, status, [action.get("tag", "latest"), "v1"])
            if where == "key":
                doc[self.MARK] = "x"
                text = b"key" + sequence
            elif request["kind"] == "tags":
                doc["name"] = self.MARK
                text = (request["path"] or "unknown").encode() + sequence
            else:
                doc["detail"] = self.MARK
                text = b"detail " + sequence
            body = json.dumps(doc).encode().replace(self.MARK.encode(), text)
        self.send_hostile(action, body)

    def fault_tag_pages(self, action, request):
        """Page after page of tags, each with a Link to the next; the page is
        known from the last= of the request (tags are named pNNNNNN-...)."""
        pages, length = action.get("pages", 3), action.get("tag_length", 64)
        per = action.get("tags_per_page", 10)
        if action.get("page_bytes"):
            per = max(1, (action["page_bytes"] - 40) // (length + 4))
        query = request["query"]
        found = re.match(r"p(\d{6})-", query.get("last", ""))
        page = int(found.group(1)) + 1 if found else 0
        count = per if page < pages else 0
        prefix = f"p{page:06d}-"
        path = request["path"] or "unknown"
        headers = dict(action.get("headers") or {})
        headers["Docker-Distribution-API-Version"] = "registry/2.0"
        if count and page + 1 < pages:
            host, port = self.server.server_address[:2]
            template = action.get("link", '</v2/{path}/tags/list?n={n}&last={last}>; rel="next"')
            headers["Link"] = fill_template(template, {
                "host": host, "port": port, "origin": f"{self.server.scheme}://{host}:{port}",
                "path": quote_path(path), "n": query.get("n") or per,
                "last": tag_name(prefix, count - 1, length), "page": page + 1})
        self.send_body(action.get("code", 200), tag_list_body(path, prefix, count, length),
                       headers, action.get("framing", "length"))

    def fault_trickle(self, action, request):
        """The model's real answer (the request takes effect), sent slowly:
        `bytes` bytes every `interval_ms`, for `seconds` (None: forever),
        before the body (filler whitespace, which JSON allows) or inside
        the header block (one endless header line)."""
        interval = action.get("interval_ms", 100) / 1000
        step = action.get("bytes", 1)
        seconds = action.get("seconds")
        ticks = None if seconds is None else math.ceil(seconds / interval)
        answer = self.model_answer(request, request["query"])
        body = b"" if answer.body is None else json.dumps(answer.body).encode()
        headers = dict(answer.headers, **(action.get("headers") or {}))
        if request["kind"] == "tags":
            headers["Docker-Distribution-API-Version"] = "registry/2.0"

        def trickled(write, piece):
            """Write piece every interval, ticks times; False if the client left."""
            sent = 0
            while ticks is None or sent < ticks:
                if self.client_gone(interval) or self.app.stop_event.is_set():
                    self.close_connection = True
                    return False
                write(piece)
                sent += 1
            return True

        if action.get("stage", "body") == "headers":
            self.answer_code = answer.code
            self.finish_log()
            self.wfile.write(f"HTTP/1.1 {answer.code} {self.responses.get(answer.code, ('',))[0]}"
                             "\r\nX-Trickle: ".encode())
            if not trickled(self.wfile.write, b"a" * step):
                return
            headers.update({"Content-Type": "application/json",
                            "Content-Length": str(len(body))})
            self.wfile.write(b"\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                             .encode() + b"\r\n" + body)
            return
        self.start_answer(answer.code)
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.send_header("Content-Type", "application/json")
        if ticks is None:  # endless: chunked, so no client rejects a huge length up front
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(ticks * step + len(body)))
        self.end_headers()
        if ticks is None:
            trickled(self.wfile.write, b"%x\r\n%s\r\n" % (step, b" " * step))
            return
        if trickled(self.wfile.write, b" " * step):
            self.wfile.write(body)

    @staticmethod
    def fake_status(request, status):
        path = request["path"] or "unknown"
        return {"name": path.rsplit("/", 1)[-1], "path": path, "status": status,
                "detail": "injected by a fault rule"}

    # -- control API ----------------------------------------------------------------------

    def handle_control(self, url):
        try:
            raw = self.read_body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise UserError("the body is not JSON") from None
            code, data = self.control(self.command, url.path[len("/_sim/"):], url.query, body)
        except UserError as error:
            code, data = 400, {"error": str(error)}
        except LookupError as error:
            code, data = 404, {"error": str(error.args[0]) if error.args else "not found"}
        except Conflict as error:
            code, data = 409, {"error": str(error)}
        self.send_json(code, data)

    def control(self, method, route, query, body):
        app, registry = self.app, self.app.registry
        params = dict(urllib.parse.parse_qsl(query))
        if route.startswith("repositories/"):
            path = split_repository_path(route[len("repositories/"):])
            if method == "GET":
                data = registry.repository_json(path)
                if data is None:
                    raise LookupError(f"unknown repository {path}")
                return 200, data
            if method == "DELETE":
                if not registry.remove(path):
                    raise LookupError(f"unknown repository {path}")
                return 200, {"removed": path}
        handlers = {
            ("GET", "health"): lambda: {"ok": True, "version": VERSION},
            ("GET", "state"): lambda: self.state_json(params.get("repositories") != "0"),
            ("GET", "repositories"): lambda: registry.state_json(True)["repositories"],
            ("POST", "repositories"): lambda: {"added": registry.add(
                require(body, "repositories", list))},
            ("GET", "requests"): lambda: app.stats.entries(as_sequence(params.get("since"))),
            ("DELETE", "requests"): lambda: app.stats.clear_log() or {"cleared": True},
            ("GET", "notifications"): app.notifier.entries,
            ("DELETE", "notifications"): lambda: app.notifier.clear() or {"cleared": True},
            ("POST", "cancel"): lambda: registry.control_end_step(
                require(body, "path", str), "canceled", "registry_cancel",
                body.get("detail", "canceled by the registry")),
            ("POST", "finish"): lambda: registry.control_end_step(
                require(body, "path", str), finish_outcome(body), "finish", body.get("detail")),
            ("GET", "faults"): app.faults.to_json,
            ("POST", "faults"): lambda: (app.faults.extend if body.get("append")
                                         else app.faults.replace)(require(body, "rules", list))
            or {"rules": app.faults.to_json()},
            ("DELETE", "faults"): lambda: app.faults.clear() or {"rules": []},
            ("GET", "notification_faults"): app.notifier.faults_json,
            ("POST", "notification_faults"): lambda: app.notifier.set_faults(body)
            or app.notifier.faults_json(),
            ("DELETE", "notification_faults"): lambda: app.notifier.set_faults({})
            or app.notifier.faults_json(),
            ("GET", "config"): app.config_json,
            ("POST", "config"): lambda: app.configure(body) or app.config_json(),
            ("POST", "reset"): lambda: self.server.registry_server.come_up() or app.reset()
            or {"reset": True},
            ("POST", "down"): lambda: self.server.registry_server.go_down(as_down_seconds(body)),
        }
        handler = handlers.get((method, route))
        if handler is None:
            raise LookupError(f"no control route {method} /_sim/{route}")
        return 200, handler()

    def state_json(self, with_repositories):
        app = self.app
        data = app.registry.state_json(with_repositories)
        data.update(app.stats.to_json())
        data["notifications"] = dict(app.notifier.counts)
        data["config"] = app.config_json()
        data["faults"] = app.faults.to_json()
        data["notification_faults"] = app.notifier.faults_json()
        return data


def as_down_seconds(body):
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 < seconds <= 3600:
        raise UserError("down: expected {\"seconds\": S} with 0 < S <= 3600")
    return float(seconds)


def require(body, key, kind):
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise UserError(f"the body needs {key!r} ({kind.__name__})")
    return body[key]


def as_sequence(value):
    try:
        return int(value or 0)
    except ValueError:
        raise UserError("since must be an integer") from None


def finish_outcome(body):
    outcome = body.get("outcome", "complete")
    if outcome not in ("complete", "failed", "canceled"):
        raise UserError("outcome must be complete, failed or canceled")
    return outcome


class SimulatorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True       # hanging or idle connections never block the exit
    request_queue_size = 1024   # hundreds of clients may connect at once
    allow_reuse_address = True

    def __init__(self, address, app, tls_context=None, registry_server=None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app = app
        self.tls_context = tls_context
        self.scheme = "http" if tls_context is None else "https"
        # A control-only listener (beside an https registry) acts on the registry's server.
        self.control_only = registry_server is not None
        self.registry_server = registry_server or self
        self.down_lock = threading.Lock()
        self.down_until = None      # monotonic clock; None: accepting connections
        self.up_timer = None

    # -- "registry down": no connection can be made for a while ----------------
    # The listening socket is closed, so a connect is refused, and opened again
    # on the same port later. Its descriptor number is kept (dup2), because
    # serve_forever watches that number.

    def is_down(self):
        with self.down_lock:
            return self.down_until is not None

    def go_down(self, seconds):
        with self.down_lock:
            if self.down_until is None:
                # Stop listening now: a close alone waits for the accept
                # thread's poll to let go of the socket.
                self.socket.shutdown(socket.SHUT_RDWR)
                placeholder = socket.socket(self.address_family, socket.SOCK_STREAM)
                os.dup2(placeholder.fileno(), self.socket.fileno())
                placeholder.close()
            if self.up_timer is not None:
                self.up_timer.cancel()
            self.down_until = time.monotonic() + seconds
            self.up_timer = threading.Timer(seconds, self.come_up)
            self.up_timer.daemon = True
            self.up_timer.start()
            return {"down_seconds": seconds}

    def come_up(self):
        with self.down_lock:
            if self.down_until is None:
                return
            fresh = socket.socket(self.address_family, socket.SOCK_STREAM)
            fresh.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            fresh.bind(self.server_address)
            fresh.listen(self.request_queue_size)
            os.dup2(fresh.fileno(), self.socket.fileno())
            fresh.close()
            self.down_until = None
            if self.up_timer is not None:
                self.up_timer.cancel()
                self.up_timer = None

    def get_request(self):
        if self.is_down():
            # The placeholder socket polls as ready; do not spin on it.
            time.sleep(0.05)
            raise OSError("the simulated registry is down")
        return super().get_request()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def certificate_common_name(certificate):
    """The CN of a peer certificate as ssl reports it, or None."""
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def tls_context(options):
    """The server context for --tls-cert/--tls-key: TLS 1.2 or later, as the
    registry's default minimum; with --tls-client-ca a client certificate
    signed by that CA is required (the registry's http.tls.clientcas)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.tls_cert, options.tls_key)
        if options.tls_client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(options.tls_client_ca)
    except (OSError, ssl.SSLError) as error:
        raise UserError(f"TLS files: {error}") from None
    return context


def parse_options(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    add("--port-file", help="write the port to this file when ready")
    add("--pre-import-seconds", type=float, default=1.0, help="pre-import duration")
    add("--import-seconds", type=float, default=0.5, help="final import duration")
    add("--max-imports", type=int, default=0, help="running steps limit (0 = none)")
    add("--cancel-cooldown", type=float, default=5.0,
        help="seconds after a canceled pre-import during which starts get 429")
    add("--notify-url", help="send notifications to URL/<path>")
    add("--notify-secret", help="Authorization header value of notifications")
    add("--notify-timeout", type=float, default=5.0, help="notification request timeout")
    add("--notify-workers", type=int, default=4, help="notification sender threads")
    add("--jwt-public-key", help="PEM key/certificate: require valid RS256 tokens")
    add("--jwt-issuer", default="registry_migration")
    add("--jwt-audience", default="container_registry")
    add("--jwt-leeway", type=float, default=60.0)
    add("--auto-create", action="store_true",
        help="unknown paths exist on the old registry with 0 tags")
    add("--ignore-tags-n", action="store_true", help="tag list ignores n (one page)")
    add("--retry-after", help="Retry-After value on 429 (import limit, cool-down)")
    add("--latency-ms", type=float, default=0.0, help="latency added to registry requests")
    add("--catch-all", action="store_true",
        help="a catcher: answer every registry request 200 (no token check), log it")
    add("--request-log-size", type=int, default=200000)
    add("--shutdown-grace", type=float, default=5.0,
        help="seconds to deliver the shutdown notifications")
    add("--verbose", action="store_true", help="log every request to stderr")
    add("--tls-cert", help="PEM certificate (chain): serve the registry over https")
    add("--tls-key", help="PEM private key of --tls-cert")
    add("--tls-client-ca", help="with https: require a client certificate signed by this CA")
    add("--control-port", type=int, default=0,
        help="with https: port of the plain-HTTP control API; 0 picks a free one (default)")
    options = parser.parse_args(argv)
    if bool(options.tls_cert) != bool(options.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if options.tls_client_ca and not options.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    return options


def server_url(server):
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{server.scheme}://{shown}:{port}"


def announce(server, control, options):
    port = server.server_address[1]
    if options.port_file:
        temporary = f"{options.port_file}.tmp{os.getpid()}"
        with open(temporary, "w") as handle:
            handle.write(f"{port}\n")
        os.replace(temporary, options.port_file)
    line = f"listening on {server_url(server)}"
    if control is not None:
        line += f" control {server_url(control)}"
    print(line, flush=True)


def main(argv=None):
    options = parse_options(argv)
    control = None
    try:
        app = Application(options)
        context = tls_context(options) if options.tls_cert else None
        server = SimulatorServer((options.bind, options.port), app, context)
        if context is not None:
            control = SimulatorServer((options.bind, options.control_port), app,
                                      registry_server=server)
    except (UserError, OSError) as error:
        print(f"registry_simulator: {error}", file=sys.stderr)
        return 2

    terminate = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: terminate.set())
    servers = [server] + ([control] if control is not None else [])
    for each in servers:
        threading.Thread(target=each.serve_forever, kwargs={"poll_interval": 0.2},
                         name="accept", daemon=True).start()
    announce(server, control, options)
    while not terminate.wait(0.5):
        pass
    canceled = app.shutdown(options.shutdown_grace)
    for each in servers:
        each.shutdown()
        each.server_close()
    if options.verbose:
        print(f"registry_simulator: stopped, {canceled} running step(s) canceled",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
