#!/usr/bin/env python3
"""A rotor client that knows only spec.md: plain sockets, plain bytes, no rotor code.

Walks one session through login, a read, a lost reply and its replay on a new connection,
deferred work and its ack, fetching the work's result, and token reuse. Every reply is checked
against the frame grammar of spec.md section 1 as well as against what the exchange should give.

With --seats POOL it takes, waits for and gives back licence seats instead (section 9); with
--code CODE it logs in with that access code, reads GET /rotor/quota and spends the code's bytes
until the server refuses, counting every frame's bytes itself (section 10).

Prints one JSON object on stdout: {"ok": true, ...facts} or {"ok": false, "step": ..., "error": ...}.
Exits 0 only when every check held.

    python3 raw_client.py --port 3666 [--host 127.0.0.1] [--user alice] [--password pw] [--seats POOL | --code CODE]
"""
import argparse
import json
import re
import socket
import sys
import time

START_LINE = re.compile(rb"^ROTOR/1 ([1-5][0-9][0-9]) ([\x20-\x7e]*)$")
HEADER_NAME = re.compile(rb"^[A-Za-z0-9-]{1,64}$")
LENGTH = re.compile(rb"^(0|[1-9][0-9]{0,14})$")


class Mismatch(Exception):
    pass


class Reply:
    def __init__(self, raw, status, reason, headers, body):
        self.raw = raw  # every byte of the frame as received
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value
        self.body = body  # bytes, or None when there was no BIN-Length

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
        """Read exactly one response frame, checking it against the grammar."""
        line, pos = self._line(0)
        m = START_LINE.match(line)
        if not m:
            raise Mismatch("bad status line %r" % line)
        headers = {}
        length = None
        while True:
            line, pos = self._line(pos)
            if line == b"":
                break
            if b"\n" in line or b"\r" in line:
                raise Mismatch("bare CR or LF in header line %r" % line)
            name, colon, value = line.partition(b":")
            if not colon or not HEADER_NAME.match(name):
                raise Mismatch("bad header line %r" % line)
            value = value.strip(b" \t")
            key = name.decode("ascii").lower()
            if key in headers:
                raise Mismatch("duplicate header %r" % name)
            if key == "bin-length":
                if not LENGTH.match(value):
                    raise Mismatch("bad BIN-Length %r" % value)
                length = int(value)
            headers[key] = value.decode("utf-8")
        body = None
        if length is not None:
            while len(self.buf) < pos + length:
                self._fill()
            body = self.buf[pos:pos + length]
            pos += length
        raw, self.buf = self.buf[:pos], self.buf[pos:]
        return Reply(raw, int(m.group(1)), m.group(2).decode("ascii"), headers, body)

    def exchange(self, data):
        self.send(data)
        return self.read_reply()


def frame(verb, path, headers=(), body=None):
    """A request frame's exact bytes."""
    out = b"%s %s ROTOR/1\r\n" % (verb.encode("ascii"), path.encode("ascii"))
    for name, value in headers:
        out += b"%s: %s\r\n" % (name.encode("ascii"), value.encode("utf-8"))
    if body is not None:
        out += b"BIN-Length: %d\r\n" % len(body)
    out += b"\r\n"
    if body is not None:
        out += body
    return out


def expect(cond, message):
    if not cond:
        raise Mismatch(message)


def expect_status(reply, status, error=None):
    expect(reply.status == status, "want status %d, got %s" % (status, reply.describe()))
    expect(reply.header("Error") == error, "want Error %r, got %s" % (error, reply.describe()))


def run(args, facts):
    conn_args = (args.host, args.port, args.timeout)
    tokens = []

    def rotated(reply):
        token = reply.header("Token")
        expect(token, "the reply has no Token: %s" % reply.describe())
        expect(token not in tokens, "the server sent a token it had sent before")
        tokens.append(token)
        return token

    facts["step"] = "login"
    a = Connection(*conn_args)
    reply = a.exchange(frame("POST", "/rotor/login", [("User", args.user), ("Password", args.password)]))
    expect_status(reply, 200)
    t1 = rotated(reply)
    expect(reply.body is None, "login reply has a body")

    facts["step"] = "read"
    reply = a.exchange(frame("GET", "/hello", [("Token", t1)]))
    expect_status(reply, 200)
    t2 = rotated(reply)
    expect(reply.body == b"hello, " + args.user.encode(), "hello body is %r" % reply.body)
    facts["hello"] = reply.body.decode("utf-8")

    facts["step"] = "lost read"
    request = frame("GET", "/hello", [("Token", t2), ("Client-Info", "raw_client.py")])
    lost = a.exchange(request)  # read, then pretend it never arrived
    expect_status(lost, 200)
    t3 = rotated(lost)
    a.close()
    b = Connection(*conn_args)
    again = b.exchange(request)
    expect(again.raw == lost.raw, "the replay differs:\n%r\n%r" % (lost.raw, again.raw))
    facts["replay_identical"] = True
    facts["replay_bytes"] = len(again.raw)

    facts["step"] = "work"
    message = b"rotor \x00\r\n bytes"
    work = frame("POST", "/reverse", [("Token", t3)], message)
    lost = b.exchange(work)
    expect_status(lost, 202)
    t4 = rotated(lost)
    task = lost.header("Task")
    expect(task and re.match(r"^[A-Za-z0-9_-]+$", task), "no task id: %s" % lost.describe())
    expect(re.match(r"^[0-9]+$", lost.header("Wait-for") or ""), "bad Wait-for %r" % lost.header("Wait-for"))
    facts["task"] = task
    b.close()

    facts["step"] = "lost work"
    c = Connection(*conn_args)
    again = c.exchange(work)
    expect(again.raw == lost.raw, "the replay of the work differs:\n%r\n%r" % (lost.raw, again.raw))
    facts["work_replay_identical"] = True

    facts["step"] = "ack"
    reply = c.exchange(frame("POST", "/rotor/ack", [("Token", t4)]))
    expect_status(reply, 200)
    expect(reply.header("Token") is None, "the ack rotated the token")
    expect(reply.body is None, "the ack has a body")

    facts["step"] = "result"
    newest = t4
    polls = 0
    deadline = time.monotonic() + 5
    while True:
        polls += 1
        reply = c.exchange(frame("GET", "/rotor/tasks/" + task, [("Token", newest)]))
        newest = rotated(reply)
        if reply.status == 200:
            break
        expect_status(reply, 202)
        expect(reply.header("Task") == task, "a pending task reply names task %r" % reply.header("Task"))
        expect(time.monotonic() < deadline, "the task was not done after %d polls" % polls)
        time.sleep(0.05)
    expect_status(reply, 200)
    expect(reply.body == message[::-1], "the result is %r, want %r" % (reply.body, message[::-1]))
    facts["result_hex"] = reply.body.hex()
    facts["polls"] = polls

    facts["step"] = "reuse"
    reply = c.exchange(frame("GET", "/hello", [("Token", t2)]))
    expect_status(reply, 401, "ROTOR_E_TOKEN_REUSED")
    expect(reply.header("Token") is None, "a refused token got a new one")
    facts["reuse"] = reply.header("Error")

    facts["step"] = "revoked"
    reply = c.exchange(frame("GET", "/hello", [("Token", newest)]))
    expect_status(reply, 401, "ROTOR_E_SESSION_REVOKED")
    expect(reply.header("Token") is None, "a revoked session rotated")
    facts["revoked"] = reply.header("Error")

    facts["step"] = "done"
    ping = c.exchange(frame("GET", "/rotor/ping"))
    expect_status(ping, 200)
    c.close()
    facts["tokens"] = len(tokens)


def seats(args, facts):
    """Spec §9: two sessions of one user and a pool of one seat: take, queue, give back, granted."""
    conn = Connection(args.host, args.port, args.timeout)
    tokens = {}

    def login(name):
        reply = conn.exchange(frame("POST", "/rotor/login", [("User", args.user), ("Password", args.password)]))
        expect_status(reply, 200)
        tokens[name] = reply.header("Token")

    def ask(name, verb):
        reply = conn.exchange(frame(verb, "/rotor/seats/" + args.seats, [("Token", tokens[name])]))
        token = reply.header("Token")
        expect(token and token != tokens[name], "a seat exchange must rotate: %s" % reply.describe())
        tokens[name] = token
        return reply

    login("first")
    login("second")
    facts["step"] = "take"
    reply = ask("first", "POST")
    expect_status(reply, 200)
    expect(reply.header("Seat") == "granted", "want granted, got %s" % reply.describe())
    expect(re.match(r"^[0-9]+$", reply.header("Seat-Expires") or ""), "bad Seat-Expires")
    facts["first"] = reply.header("Seat")
    facts["step"] = "queue"
    reply = ask("second", "POST")
    expect_status(reply, 202)
    expect(reply.header("Seat") == "queued" and reply.header("Seat-Position") == "1", "want queued at 1: %s" % reply.describe())
    expect(re.match(r"^[0-9]+$", reply.header("Wait-for") or ""), "bad Wait-for")
    facts["second"] = "queued %s" % reply.header("Seat-Position")
    reply = ask("second", "GET")
    expect_status(reply, 200)
    standing = json.loads(reply.body.decode("utf-8"))
    facts["standing"] = standing
    facts["step"] = "give back"
    reply = ask("first", "DELETE")
    expect_status(reply, 200)
    expect(reply.header("Seat") == "none", "want none: %s" % reply.describe())
    facts["step"] = "granted"
    reply = ask("second", "POST")
    expect_status(reply, 200)
    expect(reply.header("Seat") == "granted", "want granted: %s" % reply.describe())
    facts["then"] = reply.header("Seat")
    facts["step"] = "done"
    conn.close()


def quota(args, facts):
    """Spec section 10: log in with an access code, read what it has left, spend it until the refusal.

    Bytes are counted as the frames go over the wire: each request as sent, each reply as received.
    """
    conn = Connection(args.host, args.port, args.timeout)
    spent = {"in": 0, "out": 0, "last": 0}

    facts["step"] = "code login"
    reply = conn.exchange(frame("POST", "/rotor/login", [("Code", args.code)]))
    expect_status(reply, 200)
    token = reply.header("Token")
    expect(token, "a code login without a Token: %s" % reply.describe())
    facts["template"] = reply.header("Quota-Template")

    def exchange(request, status):
        """One exchange of the session: counted when it rotated (the spec's token rule), else the refusal."""
        reply = conn.exchange(request)
        if reply.header("Token") is not None:
            expect_status(reply, status)
            expect(reply.header("Token") != token, "the exchange did not rotate")
            spent["in"] += len(request)
            spent["out"] += len(reply.raw)
            spent["last"] = len(reply.raw)
        return reply

    facts["step"] = "quota"
    reply = exchange(frame("GET", "/rotor/quota", [("Token", token)]), 200)
    expect(reply.header("Content-Type") == "application/json", "the quota is not JSON: %s" % reply.describe())
    status = json.loads(reply.body.decode("utf-8"))
    expect(status.get("metered") is True, "the session is not metered: %r" % status)
    used, limits, left = status["used"], status["limits"], status["remaining"]
    # The code's totals, this request included, its reply not yet: for a fresh code, what was sent so far.
    sent_before = spent["in"]
    expect(used["bytesIn"] == sent_before and used["bytesOut"] == 0, "used is %r, the client sent %d bytes" % (used, sent_before))
    cap = limits["bytesTotal"]
    expect(isinstance(cap, int), "no bytes-total cap: %r" % limits)
    expect(left["bytesTotal"] == cap - sent_before, "remaining is %r with %d of %d spent" % (left, sent_before, cap))
    facts["quota"] = {"template": status["template"], "bytes_total": cap, "remaining": left["bytesTotal"], "used_in": used["bytesIn"]}
    token = reply.header("Token")

    facts["step"] = "spend"
    exchanges = 0
    while True:
        expect(exchanges < 1000, "no refusal after %d exchanges" % exchanges)
        request = frame("POST", "/reverse", [("Token", token)], b"spend " * 20)
        reply = exchange(request, 202)
        if reply.header("Token") is None:
            break
        token = reply.header("Token")
        exchanges += 1
    expect(reply.status == 403, "the refusal is %s" % reply.describe())
    facts["refusal"] = reply.header("Error")
    facts["quota_limit"] = reply.header("Quota-Limit")
    facts["exchanges"] = exchanges
    facts["spent"] = spent["in"] + spent["out"]
    facts["last_reply_bytes"] = spent["last"]
    facts["refused_request_bytes"] = len(request)

    facts["step"] = "after"
    reply = conn.exchange(frame("GET", "/hello", [("Token", token)]))
    expect(reply.header("Token") is None, "an ended session rotated: %s" % reply.describe())
    facts["after"] = reply.header("Error")
    reply = conn.exchange(frame("POST", "/rotor/login", [("Code", args.code)]))
    expect(reply.header("Token") is None, "a spent code logged in: %s" % reply.describe())
    facts["login_again"] = "%d %s %s" % (reply.status, reply.header("Error"), reply.header("Quota-Limit"))
    facts["step"] = "done"
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="pw")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seats", help="run the seat exchanges of spec section 9 against this pool instead")
    parser.add_argument("--code", help="log in with this access code and spend it (spec section 10) instead")
    args = parser.parse_args()
    facts = {"ok": False}
    try:
        (seats if args.seats else quota if args.code else run)(args, facts)
        facts["ok"] = True
    except (Mismatch, OSError) as err:
        facts["error"] = "%s: %s" % (type(err).__name__, err)
    print(json.dumps(facts, sort_keys=True))
    return 0 if facts["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
