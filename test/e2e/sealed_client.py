#!/usr/bin/env python3
"""A sealed-session client (spec.md section 12) that knows only spec.md: plain sockets, plain bytes.

Standard library plus the `cryptography` package (Ed25519, X25519, HKDF); HMAC and SHA-256 from
the standard library. No rotor code.

1. Offline, first: reads spec.md (its path is an argument, so a change to the spec is caught) and,
   from section 12's app key and the instance's X25519 private key, reproduces its examples byte
   for byte: the instance's Seal-Key, the Seal (Ed25519 is deterministic), the session key from
   the example server's Seal-Key, and every example Seal-Proof.
2. Online, against a rotor server over raw TCP frames (section 1, section 7): an open nonce, the
   open (and the refused opens around it), the confirmation, a read, work whose reply is lost and
   recovered, the task's result, every proof refusal of section 12 (each followed by a request
   that shows the session still works), a cloned instance ending its own session, and logout.
   Where the spec does not say what happens (a low-order open's nonce, a non-canonical base64url
   proof), the answer is reported as a `probe_…` fact and any answer the spec admits passes.

Prints one JSON object on stdout: {"ok": ..., "step": ..., "error": ..., ...facts}. Exits 0 only
when every check held.

    python3 sealed_client.py --spec spec.md [--offline]
    python3 sealed_client.py --spec spec.md --server 127.0.0.1:3666 --app APP_ID --key APP_KEY [--instance ID]
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

START_LINE = re.compile(rb"^ROTOR/1 ([1-5][0-9][0-9]) ([\x20-\x7e]*)$")
HEADER_NAME = re.compile(rb"^[A-Za-z0-9-]{1,64}$")
LENGTH = re.compile(rb"^(0|[1-9][0-9]{0,14})$")
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
TOKEN_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a sealed reply's Seal-Nonce (section 12)

RAW = serialization.Encoding.Raw
RAW_PUBLIC = serialization.PublicFormat.Raw


class Mismatch(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Mismatch(message)


# --- base64url and the section 12 formulas -------------------------------------------------

def b64u(data):
    """RFC 4648 section 5 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text, size=None):
    """Strict base64url: the alphabet, no padding, canonical (encodes back to the same text)."""
    expect(isinstance(text, str) and B64URL.match(text) and len(text) % 4 != 1, "not base64url: %r" % (text,))
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    expect(b64u(data) == text, "not canonical base64url: %r" % text)
    expect(size is None or len(data) == size, "%r is %d bytes, want %s" % (text, len(data), size))
    return data


def open_text(app, instance, open_nonce, seal_key, body=None):
    """What the app key signs: the open's headers and the digest of its body (the initial metadata)."""
    return ("rotor-seal/1 open\n%s\n%s\n%s\n%s\n%s" % (app, instance, open_nonce, seal_key, body_digest(body))).encode("utf-8")


def session_key(private, server_seal_key, open_nonce, app, instance, own_seal_key):
    """HKDF-SHA256(IKM = X25519(own private, other's public), salt = open nonce, info = ..., 32)."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(unb64u(server_seal_key, 32)))
    except ValueError:  # OpenSSL refuses an all-zero shared secret itself
        shared = bytes(32)
    expect(shared != bytes(32), "the server's Seal-Key gives an all-zero shared secret")
    info = "rotor-seal/1 session\n%s\n%s\n%s\n%s" % (app, instance, own_seal_key, server_seal_key)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=open_nonce.encode("utf-8"), info=info.encode("utf-8"))
    return hkdf.derive(shared)


def body_digest(body):
    return b64u(hashlib.sha256(body or b"").digest())


def seal_mac(key, nonce, verb, path, digest):
    text = "rotor-seal/1 request\n%s\n%s\n%s\n%s" % (nonce, verb, path, digest)
    return b64u(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()[:16])


def seal_proof(key, nonce, verb, path, body, digest_of=None):
    """`<nonce>.<digest>.<mac>`; digest_of: the body the proof is made for, when not the one sent."""
    digest = body_digest(body if digest_of is None else digest_of)
    return "%s.%s.%s" % (nonce, digest, seal_mac(key, nonce, verb, path, digest))


def noncanonical(text):
    """The same bytes in base64url with the unused low bits of the last character set: not canonical."""
    bits = {22: 4, 43: 2}[len(text)]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    value = alphabet.index(text[-1])
    expect(value % (1 << bits) == 0, "%r is not canonical already" % text)
    return text[:-1] + alphabet[value + 1]


# --- section 12's examples, read from spec.md -----------------------------------------------

class Frame:
    def __init__(self, start, headers, body):
        self.start = start  # the start line, as text
        self.headers = headers  # lower-case name -> value
        self.body = body  # bytes, or None without BIN-Length

    def header(self, name):
        return self.headers.get(name.lower())

    def verb_path(self):
        verb, path, version = self.start.split(" ")
        expect(version == "ROTOR/1", "example start line %r" % self.start)
        return verb, path

    def wire(self, order):
        """The frame's bytes as sent (headers in the order the example lists them)."""
        out = self.start.encode("utf-8") + b"\r\n"
        for name, value in order:
            out += ("%s: %s\r\n" % (name, value)).encode("utf-8")
        out += b"\r\n"
        return out + (self.body or b"")


def parse_block(text):
    lines = text.split("\n") + [""]  # a frame without headers ends at the block's end
    headers, order = {}, []
    i = 1
    while lines[i] != "":
        name, _, value = lines[i].partition(":")
        headers[name.lower()] = value.strip(" \t")
        order.append((name, value.strip(" \t")))
        i += 1
    body = None
    if "bin-length" in headers:
        body = "\n".join(lines[i + 1:-1]).encode("utf-8")
        expect(len(body) == int(headers["bin-length"]), "example body is %d bytes, BIN-Length %s" % (len(body), headers["bin-length"]))
    frame = Frame(lines[0], headers, body)
    frame.order = order
    return frame


def spec_section12(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.index("\n## 12.")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    examples = {}
    for part in re.split(r"\n### ", section)[1:]:
        name = part.split("\n", 1)[0].strip()
        blocks = re.findall(r"```rotor\n(.*?)\n```", part, re.S)
        if blocks:
            examples[name] = [parse_block(b) for b in blocks]
    m = re.search(r"has the id `([A-Za-z0-9_-]+)` and the app key\s+`([A-Za-z0-9_-]+)`\s+\(its public key `([A-Za-z0-9_-]+)`\)", section)
    expect(m, "section 12 names no app id, app key and public key")
    app, key, public = m.groups()
    m = re.search(r"the instance `([^`]+)` opens with the X25519 private key of 32 bytes of `0x([0-9a-fA-F]{2})`", section)
    expect(m, "section 12 names no instance and X25519 private key")
    return {"app": app, "key": key, "public": public, "instance": m.group(1), "x25519": bytes([int(m.group(2), 16)]) * 32, "examples": examples}


def offline(spec_path, facts):
    """Reproduce section 12's examples; one fact per check, all of them run."""
    checks = {}

    def check(name, fn):
        try:
            checks[name] = bool(fn())
        except (Mismatch, KeyError, IndexError, ValueError, InvalidSignature) as err:
            checks[name] = False
            facts.setdefault("offline_errors", {})[name] = "%s: %s" % (type(err).__name__, err)

    spec = spec_section12(spec_path)
    ex = spec["examples"]
    names = ["seal-nonce", "seal-open", "seal-confirm", "sealed-read", "seal-proof-missing", "seal-body-changed", "sealed-work", "seal-replayed", "seal-nonce-wrong"]
    check("offline_examples", lambda: all(len(ex.get(n, [])) == 2 for n in names))
    app, instance = spec["app"], spec["instance"]
    signer = Ed25519PrivateKey.from_private_bytes(unb64u(spec["key"], 32))
    ours = X25519PrivateKey.from_private_bytes(spec["x25519"])
    open_nonce = ex["seal-nonce"][1].header("Seal-Nonce")
    req, rep = ex["seal-open"]
    own_key = b64u(ours.public_key().public_bytes(RAW, RAW_PUBLIC))
    seal = b64u(signer.sign(open_text(app, instance, open_nonce, own_key)))

    check("offline_app_public_key", lambda: b64u(signer.public_key().public_bytes(RAW, RAW_PUBLIC)) == spec["public"])
    check("offline_open_headers", lambda: req.header("App") == app and req.header("Instance") == instance and req.header("Seal-Nonce") == open_nonce)
    check("offline_seal_key", lambda: req.header("Seal-Key") == own_key)
    check("offline_seal", lambda: req.header("Seal") == seal)
    check("offline_seal_verifies", lambda: Ed25519PublicKey.from_public_bytes(unb64u(spec["public"], 32)).verify(
        unb64u(req.header("Seal"), 64), open_text(app, instance, req.header("Seal-Nonce"), req.header("Seal-Key"))) is None)
    check("offline_open_reply", lambda: rep.start == "ROTOR/1 200 OK" and TOKEN_NONCE.match(rep.header("Seal-Nonce")) and len(unb64u(rep.header("Seal-Key"), 32)) == 32)
    key = session_key(ours, rep.header("Seal-Key"), open_nonce, app, instance, own_key)

    def proof_of(example, nonce):
        verb, path = example.verb_path()
        return seal_proof(key, nonce, verb, path, example.body)

    first_nonce = rep.header("Seal-Nonce")
    confirm, read, work = ex["seal-confirm"][0], ex["sealed-read"], ex["sealed-work"]
    read_nonce = read[1].header("Seal-Nonce")
    work_nonce = work[1].header("Seal-Nonce")
    check("offline_proof_confirm", lambda: confirm.header("Seal-Proof") == proof_of(confirm, first_nonce) and confirm.body is None)
    check("offline_proof_read", lambda: read[0].header("Seal-Proof") == proof_of(read[0], first_nonce))
    check("offline_proof_work", lambda: work[0].header("Seal-Proof") == proof_of(work[0], read_nonce) and work[0].body == b"stressed")
    changed = ex["seal-body-changed"][0]
    check("offline_body_changed", lambda: changed.header("Seal-Proof") == work[0].header("Seal-Proof")
          and changed.body != work[0].body and changed.header("Seal-Proof").split(".")[1] != body_digest(changed.body))
    check("offline_replayed", lambda: ex["seal-replayed"][0].wire(ex["seal-replayed"][0].order) == work[0].wire(work[0].order))
    wrong = ex["seal-nonce-wrong"][0]
    check("offline_proof_nonce_wrong", lambda: wrong.header("Seal-Proof") == proof_of(wrong, work_nonce) and work_nonce != read_nonce)
    check("offline_proof_missing", lambda: ex["seal-proof-missing"][0].header("Seal-Proof") is None
          and ex["seal-proof-missing"][1].header("Error") == "ROTOR_E_SEAL_PROOF_MISSING")
    # The tokens follow the session machine: the ack does not rotate, the read does, the work does.
    check("offline_tokens", lambda: confirm.header("Token") == rep.header("Token") == read[0].header("Token")
          and read[1].header("Token") == work[0].header("Token") == changed.header("Token")
          and len({rep.header("Token"), read[1].header("Token"), work[1].header("Token"), wrong.header("Token")}) == 4)
    check("offline_hello", lambda: read[1].body == ("hello, app:%s/%s" % (app, instance)).encode("utf-8"))
    facts.update(checks)
    facts["offline_ok"] = all(checks.values())
    return facts["offline_ok"]


# --- frames over TCP (section 1) ------------------------------------------------------------

class Reply:
    def __init__(self, raw, status, headers, body):
        self.raw = raw
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def describe(self):
        return "%d %s %r" % (self.status, self.header("Error") or "", self.body)


class Connection:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Mismatch("the server closed the connection in the middle of a reply")
        self.buf += chunk

    def _line(self, consumed):
        while True:
            end = self.buf.find(b"\r\n", consumed)
            if end != -1:
                return self.buf[consumed:end], end + 2
            self._fill()

    def read_reply(self):
        line, pos = self._line(0)
        m = START_LINE.match(line)
        expect(m, "bad status line %r" % line)
        headers, length = {}, None
        while True:
            line, pos = self._line(pos)
            if line == b"":
                break
            expect(b"\n" not in line and b"\r" not in line, "bare CR or LF in %r" % line)
            name, colon, value = line.partition(b":")
            expect(colon and HEADER_NAME.match(name), "bad header line %r" % line)
            value = value.strip(b" \t")
            lower = name.decode("ascii").lower()
            expect(lower not in headers, "duplicate header %r" % name)
            if lower == "bin-length":
                expect(LENGTH.match(value), "bad BIN-Length %r" % value)
                length = int(value)
            headers[lower] = value.decode("utf-8")
        body = None
        if length is not None:
            while len(self.buf) < pos + length:
                self._fill()
            body = self.buf[pos:pos + length]
            pos += length
        raw, self.buf = self.buf[:pos], self.buf[pos:]
        return Reply(raw, int(m.group(1)), headers, body)

    def exchange(self, data):
        self.send(data)
        return self.read_reply()


def frame(verb, path, headers=(), body=None):
    out = b"%s %s ROTOR/1\r\n" % (verb.encode("ascii"), path.encode("ascii"))
    for name, value in headers:
        out += b"%s: %s\r\n" % (name.encode("ascii"), value.encode("utf-8"))
    if body is not None:
        out += b"BIN-Length: %d\r\n" % len(body)
    out += b"\r\n"
    return out + (body or b"")


def expect_status(reply, status, error=None):
    expect(reply.status == status and reply.header("Error") == error,
           "want %d %s, got %s" % (status, error or "", reply.describe()))


# --- a sealed session -----------------------------------------------------------------------

class Sealed:
    """The newest token, its Seal-Nonce and the session key; every request carries a proof."""

    def __init__(self, conn, token, nonce, key, seen):
        self.conn, self.token, self.nonce, self.key = conn, token, nonce, key
        self.seen = seen  # every token and nonce the server sent (they never come twice)
        self.generations = 1
        self.nonces = [nonce]

    def request(self, verb, path, body=None, proof=True, nonce=None, token=None, key=None, digest_of=None):
        headers = [("Token", token or self.token)]
        if proof is True:
            proof = seal_proof(key or self.key, nonce or self.nonce, verb, path, body, digest_of)
        if proof:
            headers.append(("Seal-Proof", proof))
        return frame(verb, path, headers, body)

    def send(self, data, replayed=False):
        """Send one frame, read its reply and follow the token rule (section 4)."""
        reply = self.conn.exchange(data)
        self.follow(reply, replayed)
        return reply

    def follow(self, reply, replayed=False):
        token = reply.header("Token")
        if token is None:
            expect(reply.header("Seal-Nonce") is None, "a reply without Token has a Seal-Nonce: %s" % reply.describe())
            return
        nonce = reply.header("Seal-Nonce")
        expect(nonce and TOKEN_NONCE.match(nonce), "a sealed reply's Token comes without a good Seal-Nonce (%r)" % nonce)
        if not replayed:
            expect(token not in self.seen and nonce not in self.seen, "the server sent a token or nonce it had sent before")
            self.generations += 1
            self.nonces.append(nonce)
        self.seen.update((token, nonce))
        self.token, self.nonce = token, nonce

    def refused(self, data, error, facts, fact):
        """A refusal before admission: 401 + Error, no Token, the token still good."""
        reply = self.conn.exchange(data)
        facts[fact] = reply.header("Error") or reply.status
        expect_status(reply, 401, error)
        expect(reply.header("Token") is None, "a refusal came with a Token")
        return reply

    def works(self, facts, fact, user):
        """The session still works: a read with the newest token."""
        reply = self.send(self.request("GET", "/hello"))
        facts[fact] = reply.status
        expect_status(reply, 200)
        expect(reply.body == ("hello, %s" % user).encode("utf-8"), "hello says %r" % reply.body)


def run(args, facts):
    host, _, port = args.server.rpartition(":")
    conn_args = (host or "127.0.0.1", int(port), args.timeout)
    app, instance = args.app, args.instance
    user = "app:%s/%s" % (app, instance)
    signer = Ed25519PrivateKey.from_private_bytes(unb64u(args.key, 32))
    conn = Connection(*conn_args)
    seen = set()

    def open_nonce():
        reply = conn.exchange(frame("GET", "/rotor/seal"))
        expect_status(reply, 200)
        nonce = reply.header("Seal-Nonce")
        expect(nonce and len(nonce) <= 128 and reply.header("Token") is None, "an open nonce reply: %r %s" % (nonce, reply.describe()))
        return reply, nonce

    def open_frame(nonce, own_key, sign=signer, app_id=app, body=None):
        seal = b64u(sign.sign(open_text(app_id, instance, nonce, own_key, body)))
        headers = [("App", app_id), ("Instance", instance), ("Seal-Nonce", nonce), ("Seal-Key", own_key), ("Seal", seal)]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        return frame("POST", "/rotor/seal", headers, body)

    def opened(reply, private, own_key, nonce):
        expect_status(reply, 200)
        token, token_nonce, server_key = reply.header("Token"), reply.header("Seal-Nonce"), reply.header("Seal-Key")
        expect(token and token_nonce and TOKEN_NONCE.match(token_nonce), "an open reply without Token and Seal-Nonce: %s" % reply.describe())
        key = session_key(private, server_key, nonce, app, instance, own_key)
        seen.update((token, token_nonce))
        return Sealed(conn, token, token_nonce, key, seen)

    def fresh_key():
        private = X25519PrivateKey.generate()
        return private, b64u(private.public_key().public_bytes(RAW, RAW_PUBLIC))

    facts["step"] = "seal nonce"
    reply, nonce = open_nonce()
    facts["seal_nonce_status"] = reply.status

    facts["step"] = "refused opens"
    private, own_key = fresh_key()
    reply = conn.exchange(open_frame(nonce, own_key, sign=Ed25519PrivateKey.generate()))
    facts["open_forged_seal"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SEAL_INVALID")
    reply = conn.exchange(open_frame(nonce, own_key, app_id="AAAAAAAAAAAAAAAA"))
    facts["open_unknown_app"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_APP_UNKNOWN")
    reply = conn.exchange(open_frame(b64u(os.urandom(16)), own_key))
    facts["open_foreign_nonce"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SEAL_NONCE_EXPIRED")

    facts["step"] = "open"
    meta = json.dumps({"build": 7}, separators=(",", ":")).encode("utf-8")
    request = open_frame(nonce, own_key, body=meta)
    reply = conn.exchange(request)
    facts["open_status"] = reply.status  # the same nonce: refused opens did not spend it
    s = opened(reply, private, own_key, nonce)
    expect(len(unb64u(reply.header("Seal-Key"), 32)) == 32, "server Seal-Key")
    reply = conn.exchange(request)
    facts["open_again"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SEAL_NONCE_USED")

    facts["step"] = "low-order key"
    # An all-zero X25519 public key (a low-order point), properly signed: the shared secret is all
    # zero bytes, ROTOR_E_SEAL_INVALID. Whether that refusal spends the open nonce the spec does
    # not say (its checks spend it last, the shared secret comes after them): probed, not judged.
    reply, low_nonce = open_nonce()
    reply = conn.exchange(open_frame(low_nonce, b64u(bytes(32))))
    facts["open_low_order"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SEAL_INVALID")
    private3, key3 = fresh_key()
    reply = conn.exchange(open_frame(low_nonce, key3))
    facts["probe_low_order_nonce_after"] = reply.header("Error") or reply.status
    expect(reply.status == 200 or reply.header("Error") == "ROTOR_E_SEAL_NONCE_USED", "after a low-order open: %s" % reply.describe())

    facts["step"] = "confirm"
    confirm = s.request("POST", "/rotor/ack")
    reply = s.send(confirm)
    facts["confirm_status"] = reply.status
    expect_status(reply, 200)
    expect(reply.header("Token") is None and reply.body is None, "the confirmation rotated or has a body")

    facts["step"] = "read"
    first_read = s.request("GET", "/hello")
    reply = s.send(first_read)
    facts["hello_status"] = reply.status
    expect_status(reply, 200)
    facts["hello"] = reply.body.decode("utf-8") if reply.body is not None else None
    expect(facts["hello"] == "hello, " + user, "hello says %r" % reply.body)

    facts["step"] = "lost reply"
    message = b"sealed \x00\r\n bytes"
    work = s.request("POST", "/reverse", message)
    conn.send(work)
    conn.close()  # the reply is lost: never read
    time.sleep(0.2)
    conn = s.conn = Connection(*conn_args)
    first = conn.exchange(work)
    s.follow(first)
    again = conn.exchange(work)  # and again: the stored reply, byte for byte
    s.follow(again, replayed=True)
    facts["work_status"] = first.status
    expect_status(first, 202)
    facts["lost_reply_identical"] = first.raw == again.raw
    expect(first.raw == again.raw, "the replay differs:\n%r\n%r" % (first.raw, again.raw))
    task = first.header("Task")
    expect(task and re.match(r"^[A-Za-z0-9_-]{1,64}$", task) and re.match(r"^[0-9]+$", first.header("Wait-for") or ""),
           "a 202 without Task and Wait-for: %r" % first.headers)
    facts["task"] = task

    def result(task_id, want, fact):
        polls, deadline = 0, time.monotonic() + 10
        while True:
            polls += 1
            reply = s.send(s.request("GET", "/rotor/tasks/" + task_id))
            expect(reply.header("Token"), "a task reply without Token: %s" % reply.describe())
            if reply.status == 200:
                break
            expect_status(reply, 202)
            expect(reply.header("Task") == task_id, "a pending task reply names %r" % reply.header("Task"))
            expect(time.monotonic() < deadline, "the task was not done after %d polls" % polls)
            if polls == 1 and fact == "task_status":
                # The reply's token is used now: the captured work request is a spent token's.
                s.refused(work, "ROTOR_E_SEAL_REPLAYED", facts, "replayed")
            time.sleep(0.05)
        facts[fact] = reply.status
        expect(reply.body == want, "the result is %r, want %r" % (reply.body, want))
        return polls

    facts["step"] = "task"
    polls = result(task, message[::-1], "task_status")
    facts["task_result_hex"] = message[::-1].hex()
    if "replayed" not in facts:  # done at the first poll: replay it now
        s.refused(work, "ROTOR_E_SEAL_REPLAYED", facts, "replayed")
    s.works(facts, "replayed_then", user)

    facts["step"] = "proof missing"
    s.refused(s.request("GET", "/hello", proof=False), "ROTOR_E_SEAL_PROOF_MISSING", facts, "proof_missing")
    s.works(facts, "proof_missing_then", user)

    facts["step"] = "proof wrong"
    s.refused(s.request("GET", "/hello", key=os.urandom(32)), "ROTOR_E_SEAL_PROOF_WRONG", facts, "proof_wrong")
    s.works(facts, "proof_wrong_then", user)
    s.refused(s.request("GET", "/hello", proof="%s.%s" % (s.nonce, body_digest(None))), "ROTOR_E_SEAL_PROOF_WRONG", facts, "proof_malformed")
    s.works(facts, "proof_malformed_then", user)

    facts["step"] = "nonce wrong"
    s.refused(s.request("GET", "/hello", nonce=s.nonces[-2]), "ROTOR_E_SEAL_NONCE_WRONG", facts, "nonce_wrong")
    s.works(facts, "nonce_wrong_then", user)

    facts["step"] = "body changed"
    s.refused(s.request("POST", "/reverse", b"desserts", digest_of=b"stressed"), "ROTOR_E_SEAL_BODY_CHANGED", facts, "body_changed")
    reply = s.send(s.request("POST", "/reverse", b"stressed"))
    facts["body_changed_then"] = reply.status
    expect_status(reply, 202)
    result(reply.header("Task"), b"desserts", "body_changed_task_status")

    facts["step"] = "clone"
    # A second session of the same instance, confirmed by its first request (no ack); then a clone
    # of it makes its own request under the spent first token: the session ends (section 12).
    reply, nonce2 = open_nonce()
    private2, key2 = fresh_key()
    c2 = opened(conn.exchange(open_frame(nonce2, key2)), private2, key2, nonce2)
    spent = c2.token
    reply = c2.send(c2.request("GET", "/hello"))
    facts["second_confirmed_by_use"] = reply.status
    expect_status(reply, 200)
    s.refused(s.request("GET", "/hello", nonce=c2.nonce), "ROTOR_E_SEAL_NONCE_WRONG", facts, "nonce_other_session")
    # Before the next token is used, the first one is a retry whatever it asks (section 4): the
    # stored reply, byte for byte, even for another request with a good proof.
    retry = conn.exchange(c2.request("GET", "/hello?clone", token=spent, nonce=c2.nonces[0]))
    facts["clone_before_ack"] = "replay" if retry.raw == reply.raw else retry.header("Error") or retry.status
    expect(retry.raw == reply.raw, "a retry before the ack is not the replay: %s" % retry.describe())
    reply = c2.send(c2.request("POST", "/rotor/ack"))
    expect_status(reply, 200)
    # A proof the server never saw (the retry's proof was accepted, so it is not a new one).
    reply = conn.exchange(c2.request("GET", "/hello?clone=2", token=spent, nonce=c2.nonces[0]))
    facts["clone"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_TOKEN_REUSED")
    reply = conn.exchange(c2.request("GET", "/hello"))
    facts["clone_then"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SESSION_REVOKED")
    s.works(facts, "first_session_lives", user)

    facts["step"] = "old replays"
    # The confirmation and the first read, many generations ago: replays, never a reuse.
    s.refused(confirm, "ROTOR_E_SEAL_REPLAYED", facts, "replayed_ack")
    s.refused(first_read, "ROTOR_E_SEAL_REPLAYED", facts, "replayed_old")
    facts["generations"] = s.generations
    s.works(facts, "replayed_old_then", user)

    facts["step"] = "malleated replay"
    # A thief re-encodes the captured work request's MAC (same bytes, non-canonical base64url):
    # whatever the server makes of it, it must not end the session (section 12: someone who sees
    # every frame but not the key "cannot end the session").
    nonce_part, digest_part, mac_part = work.split(b"Seal-Proof: ", 1)[1].split(b"\r\n", 1)[0].decode().split(".")
    altered = work.replace(mac_part.encode(), noncanonical(mac_part).encode(), 1)
    reply = conn.exchange(altered)
    facts["malleated_replay"] = reply.header("Error")
    expect(reply.header("Token") is None and reply.header("Error") in ("ROTOR_E_SEAL_PROOF_WRONG", "ROTOR_E_SEAL_REPLAYED"),
           "a re-encoded captured proof got %s" % reply.describe())
    s.works(facts, "malleated_replay_then", user)

    facts["step"] = "non-canonical proofs"
    # A fresh proof whose MAC, or digest, is the right bytes in non-canonical base64url: the spec
    # says "base64url of" and lists only lengths as malformed; probed, not judged.
    for part, fact in ((2, "probe_noncanonical_mac"), (1, "probe_noncanonical_digest")):
        pieces = seal_proof(s.key, s.nonce, "GET", "/hello", None).split(".")
        pieces[part] = noncanonical(pieces[part])
        reply = s.send(s.request("GET", "/hello", proof=".".join(pieces)))
        facts[fact] = reply.header("Error") or reply.status
        expect(reply.status == 200 or reply.header("Error") in ("ROTOR_E_SEAL_PROOF_WRONG", "ROTOR_E_SEAL_BODY_CHANGED"),
               "a non-canonical proof got %s" % reply.describe())
    s.works(facts, "noncanonical_then", user)

    facts["step"] = "meta"
    reply = s.send(s.request("PUT", "/rotor/token", b'{"step":"meta"}'))
    facts["meta_status"] = reply.status
    expect_status(reply, 200)
    facts["meta"] = json.loads(reply.body.decode("utf-8"))

    facts["step"] = "logout"
    newest = s.token
    reply = s.send(s.request("POST", "/rotor/logout"))
    facts["logout_status"] = reply.status
    expect_status(reply, 200)
    expect(reply.header("Token") is None, "logout rotated")
    reply = conn.exchange(s.request("GET", "/hello", token=newest))
    facts["after_logout"] = reply.header("Error")
    expect_status(reply, 401, "ROTOR_E_SESSION_REVOKED")
    # Without a proof: section 12 checks the proof before the session machine (section 4), so a
    # sealed session's token without one is ROTOR_E_SEAL_PROOF_MISSING, revoked or not.
    reply = conn.exchange(s.request("GET", "/hello", token=newest, proof=False))
    facts["after_logout_no_proof"] = reply.header("Error")
    expect(reply.status == 401 and reply.header("Token") is None, "after logout: %s" % reply.describe())
    facts["step"] = "done"
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True, help="spec.md: section 12's examples are checked first")
    parser.add_argument("--offline", action="store_true", help="only check the examples")
    parser.add_argument("--server", help="host:port of a rotor TCP listener")
    parser.add_argument("--app", help="the app id (rotor app add)")
    parser.add_argument("--key", help="the app key: base64url of the Ed25519 seed")
    parser.add_argument("--instance", default="py-client.example.net")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    facts = {"ok": False, "step": "offline"}
    ok = False
    try:
        ok = offline(args.spec, facts)
        if not args.offline:
            expect(args.server and args.app and args.key, "--server, --app and --key are needed online")
            run(args, facts)
        else:
            facts["step"] = "done"
        facts["ok"] = ok
    except Exception as err:  # a Mismatch, a socket error, or anything the spec's text breaks
        facts["error"] = "%s: %s" % (type(err).__name__, err)
    print(json.dumps(facts, sort_keys=True))
    return 0 if facts["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
