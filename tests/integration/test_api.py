"""The HTTP API (docs/api.md) end to end, with urllib against a real Parley and real SIP peers.

Parley runs the conversation handler on the test models with the store, recordings (without_line), the HTTP
server on a free loopback port with a generated token (token_file under the work dir) and a [[line]] with a
password that registers to a port nobody answers. Checked:
  * the token file is mode 0600, the token is printed once at the first start and not at a restart;
  * auth: 401 + WWW-Authenticate without/with a wrong token, 200 with Bearer and with ?access_token=;
  * 400 with the field named: bad JSON, unknown field, non-sip `to`, limit 0/501, bad direction/status,
    unknown query parameter; PUT /api/config with an unknown key, a wrong type, vad_threshold=3: nothing
    changes;
  * SSE (/api/events?access_token=) gets call_started, call_answered, turn, call_ended per call, in order;
  * 3 concurrent SIPp calls that speak: total 3, limit=2 pages 2 + 1 without overlap, direction filters,
    turns with voice_to_voice_ms numbers, the recording is a stereo 16 kHz WAV as long as the call with the
    caller on the left (energy where SIPp spoke) and Parley on the right (the greeting), Range gives 206;
  * PUT agent.greeting (long -> one word): 200 with applied, the next call's first burst of Parley audio is
    much shorter, the overrides file is 0600, a restarted Parley still has the new greeting;
  * POST /api/calls to a SIPp callee: 201, outbound, DELETE -> 202 and end_reason api_hangup, DELETE -> 404;
  * the CLI: calls / show / hangup <unknown> (404, non-zero) / call (prints an id);
  * the line's password is in no response body and not in the log."""
import json
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, _udp_free, caller_timeline, check, envelope, free_port, log,  # noqa: E402
                        wait_http, wait_until)

SECRET = "s3cr3t-Pw-7f3a91-never-shown"
OLD_GREETING = ("Hello and welcome to the Parley integration test line. This greeting is deliberately long, "
                "so that a much shorter one is easy to tell apart.")
NEW_GREETING = "Hi."


class Api:
    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token
        self.bodies: list[tuple[str, bytes]] = []  # every response body, for the secrets check

    def req(self, method: str, path: str, body=None, token: str | None = "default", raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 10.0):
        """-> (status, headers, body bytes); never raises for an HTTP status."""
        hdrs = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                out = (resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as e:
            out = (e.code, e.headers, e.read())
        self.bodies.append((f"{method} {path}", out[2]))
        return out

    def json(self, method: str, path: str, body=None, expect: int = 200, **kw):
        st, _, b = self.req(method, path, body, **kw)
        check(st == expect, f"{method} {path}: expected {expect}, got {st}: {b[:500]!r}")
        return json.loads(b)

    def error(self, method: str, path: str, body=None, expect: int = 400, names: str = "", **kw) -> str:
        st, _, b = self.req(method, path, body, **kw)
        check(st == expect, f"{method} {path} {body!r}: expected {expect}, got {st}: {b[:300]!r}")
        try:
            msg = json.loads(b)["error"]
        except (ValueError, KeyError, TypeError):
            msg = None
        check(isinstance(msg, str), f"{method} {path}: error body is not {{\"error\": ...}}: {b[:300]!r}")
        check(names.lower() in msg.lower(), f"{method} {path} {body!r}: message {msg!r} does not name {names!r}")
        log(f"  {method} {path} -> {st} {msg!r}")
        return msg


class Sse:
    """A thread reading /api/events: (type, data) in arrival order."""

    def __init__(self, url: str):
        self.events: list[tuple[str, dict]] = []
        self.resp = urllib.request.urlopen(url, timeout=60)
        check(self.resp.status == 200, f"GET /api/events: {self.resp.status}")
        ctype = self.resp.headers.get("Content-Type", "")
        check(ctype.startswith("text/event-stream"), f"/api/events Content-Type {ctype!r}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        etype, data = None, []
        try:
            for raw in self.resp:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("event:"):
                    etype = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "":
                    if etype and data:
                        try:
                            self.events.append((etype, json.loads("\n".join(data))))
                        except ValueError:
                            self.events.append((etype, {"_bad": "\n".join(data)}))
                    etype, data = None, []
        except Exception:  # noqa: BLE001 - closed at the end
            pass

    def close(self):
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001
            pass


def read_rec(data: bytes, path: Path):
    path.write_bytes(data)
    with wave.open(str(path), "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(n), dtype="<i2")
    return ch, width, rate, pcm.reshape(-1, ch).astype(np.float64) if ch else pcm


def first_burst(env: np.ndarray, frame_s: float = 0.01, thr: float = 300.0, gap: float = 0.6) -> tuple[float, float]:
    """(start, end) s of the first run of loud 10 ms frames, joined across pauses shorter than `gap` s."""
    loud = np.nonzero(env > thr)[0]
    check(len(loud) > 0, "no sound at all in Parley's channel of the recording")
    a = b = loud[0]
    for i in loud[1:]:
        if (i - b) * frame_s > gap:
            break
        b = i
    return a * frame_s, (b + 1) * frame_s


def main(t: Test):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var = t.dir / "var"
    token_file = var / "http-token"
    overrides = var / "api-config.json"
    dead_registrar = free_port()  # nobody listens there: the line never registers (fine)
    _, spans = caller_timeline(t, [8.0, "I would like to check my order status please.", 5.0])
    call_ms = 15500

    sections = dict(
        max_tokens=4, agent={"greeting": OLD_GREETING, "silence_prompt_s": 0},
        store={"path": str(var / "parley.db")},
        recording={"without_line": True, "dir": str(var / "recordings")},
        http={"listen": f"127.0.0.1:{port}", "token_file": str(token_file), "overrides_file": str(overrides)},
        line=[{"name": "office", "registrar": f"sip:127.0.0.1:{dead_registrar}", "user": "1001",
               "password": SECRET, "transport": "udp", "expires": 60}])
    p = t.conversation(**sections)

    # --- the generated token ---
    check(token_file.is_file(), f"token file {token_file} not written")
    mode = stat.S_IMODE(token_file.stat().st_mode)
    t.measure("token_file_mode", oct(mode))
    check(mode == 0o600, f"token file mode {oct(mode)}, expected 0600")
    token = token_file.read_text().strip()
    check(re.fullmatch(r"[0-9a-f]{64}", token), f"token {token!r} is not 32 random bytes in hex")
    wait_until(lambda: token in p.text(), 5, what="the generated token to be printed")
    t.measure("token_printed_times_first_start", p.text().count(token))
    check(p.text().count(token) == 1, f"the token is printed {p.text().count(token)} times at the first start")

    wait_http(base)
    api = Api(base, token)

    # --- auth ---
    st, h, _ = api.req("GET", "/api/calls", token=None)
    check(st == 401 and h.get("WWW-Authenticate", "").startswith("Bearer"),
          f"no token: expected 401 + WWW-Authenticate: Bearer, got {st} {h.get('WWW-Authenticate')!r}")
    st, h, _ = api.req("GET", "/api/calls", token="0" * 64)
    check(st == 401 and h.get("WWW-Authenticate", "").startswith("Bearer"), f"wrong token: got {st}")
    st, _, _ = api.req("GET", "/api/calls?access_token=wrong", token=None)
    check(st == 401, f"wrong ?access_token: got {st}")
    st, _, _ = api.req("GET", "/api/calls")
    check(st == 200, f"Bearer token: got {st}")
    st, _, _ = api.req("GET", f"/api/calls?access_token={token}", token=None)
    check(st == 200, f"?access_token=: got {st}")

    # --- validation ---
    api.error("POST", "/api/calls", raw=b"{not json", names="JSON")
    api.error("POST", "/api/calls", {"to": "sip:x@127.0.0.1", "bogus_field": "1"}, names="bogus_field")
    api.error("POST", "/api/calls", {"to": "tel:+15551234"}, names="to")
    api.error("POST", "/api/calls", {}, names="to")
    api.error("GET", "/api/calls?limit=0", names="limit")
    api.error("GET", "/api/calls?limit=501", names="limit")
    api.error("GET", "/api/calls?direction=sideways", names="direction")
    api.error("GET", "/api/calls?status=sleeping", names="status")
    api.error("GET", "/api/calls?colour=blue", names="colour")
    cfg0 = api.json("GET", "/api/config")
    check(cfg0["agent"]["greeting"] == OLD_GREETING, f"GET /api/config greeting {cfg0['agent'].get('greeting')!r}")
    api.error("PUT", "/api/config", {"agent": {"no_such_key": 1}}, names="no_such_key")
    api.error("PUT", "/api/config", {"no_such_section": {"x": 1}}, names="no_such_section")
    api.error("PUT", "/api/config", {"agent": {"greeting": 5}}, names="greeting")
    api.error("PUT", "/api/config", {"agent": {"vad_threshold": 3, "greeting": "Changed?"}}, names="vad_threshold")
    api.error("PUT", "/api/config", raw=b"[1,2", names="JSON")
    cfg1 = api.json("GET", "/api/config")
    check(cfg1["agent"] == cfg0["agent"], f"a refused PUT changed [agent]: {cfg0['agent']} -> {cfg1['agent']}")
    check(not overrides.exists(), "a refused PUT wrote the overrides file")
    lines = cfg1.get("lines", [])
    check(len(lines) == 1 and lines[0].get("password_set") is True and "password" not in lines[0],
          f"GET /api/config lines: expected password_set true and no password, got {lines}")
    st, _, b = api.req("GET", "/api/lines")
    check(st == 200 and json.loads(b)["lines"][0]["name"] == "office", f"GET /api/lines: {st} {b[:300]!r}")

    # --- SSE + 3 concurrent calls that speak ---
    sse = Sse(f"{base}/api/events?access_token={token}")
    t.on_cleanup(sse.close)
    s = t.sipp_start("uac_echo.xml", p.sip_addr, calls=3, limit=3, rate=10, duration_ms=call_ms, timeout=40)
    r = s.wait()
    check(r.rc == 0 and r.successful == 3, f"3 speaking calls: sipp rc={r.rc} successful={r.successful}\n"
          f"{r.errors()[-1500:]}")
    wait_until(lambda: len([e for e in sse.events if e[0] == "call_ended"]) >= 3, 10, what="3 call_ended events")
    time.sleep(0.5)  # the store thread's commit
    ev = list(sse.events)
    t.measure("sse_event_types", [e[0] for e in ev])
    ids = [d.get("id") for k, d in ev if k == "call_started"]
    check(len(ids) == 3, f"expected 3 call_started events, got {ids}")
    for uid in ids:
        order = []
        for k, d in ev:
            cid = d.get("call") if k == "turn" else d.get("id")
            if cid == uid and k in ("call_started", "call_answered", "turn", "call_ended"):
                order.append(k)
        dedup = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
        check(dedup == ["call_started", "call_answered", "turn", "call_ended"],
              f"SSE events of call {uid}: {order} (expected started, answered, turn(s), ended)")
    ended = {d["id"]: d for k, d in ev if k == "call_ended"}
    for uid in ids:
        check(ended[uid].get("live") is False and ended[uid].get("end_reason"),
              f"call_ended of {uid} lacks end_reason/live false: {ended[uid]}")

    # --- the list, pagination, filters ---
    lst = api.json("GET", "/api/calls")
    t.measure("calls_total", lst["total"])
    check(lst["total"] == 3 and len(lst["calls"]) == 3, f"GET /api/calls: total {lst['total']}, {len(lst['calls'])}")
    check(sorted(c["id"] for c in lst["calls"]) == sorted(ids), "the listed ids are not the SSE's call ids")
    starts = [c["started_at"] for c in lst["calls"]]
    check(starts == sorted(starts, reverse=True), f"not newest first: {starts}")
    p1 = api.json("GET", "/api/calls?limit=2")
    p2 = api.json("GET", "/api/calls?limit=2&offset=2")
    a, b = [c["id"] for c in p1["calls"]], [c["id"] for c in p2["calls"]]
    check(len(a) == 2 and len(b) == 1 and not set(a) & set(b) and set(a) | set(b) == set(ids),
          f"pagination limit=2: {a} + {b}")
    check(p1["total"] == 3 and p2["total"] == 3, "total must not depend on limit/offset")
    check(api.json("GET", "/api/calls?direction=inbound")["total"] == 3, "direction=inbound != 3")
    check(api.json("GET", "/api/calls?direction=outbound")["total"] == 0, "direction=outbound != 0")
    check(api.json("GET", "/api/calls?status=ended")["total"] == 3, "status=ended != 3")
    check(api.json("GET", "/api/calls?status=live")["total"] == 0, "status=live != 0")

    # --- details, recordings ---
    old_bursts = []
    for c in lst["calls"]:
        d = api.json("GET", f"/api/calls/{c['id']}")
        check(d["direction"] == "inbound" and d["answered_at"] and d["ended_at"] and d["recording"] is True,
              f"call {c['id']}: {json.dumps({k: v for k, v in d.items() if k not in ('turns', 'events')})}")
        check(len(d["turns"]) >= 1, f"call {c['id']} has no turns")
        speech_turns = [tn for tn in d["turns"] if tn["trigger"] == "speech"]
        check(speech_turns, f"call {c['id']}: no speech turn: {d['turns']}")
        for tn in speech_turns:
            v2v = tn["timing"].get("voice_to_voice_ms")
            check(isinstance(v2v, (int, float)) and 0 < v2v < 20000 and v2v == tn["timing"].get("first_rtp_ms"),
                  f"call {c['id']} turn {tn['idx']}: voice_to_voice_ms {v2v!r} (timing {tn['timing']})")
        st, h, data = api.req("GET", f"/api/calls/{c['id']}/recording")
        check(st == 200 and h.get("Content-Type", "").startswith("audio/wav"),
              f"recording of {c['id']}: {st} {h.get('Content-Type')}")
        ch, width, rate, pcm = read_rec(data, t.dir / f"rec-{c['id']}.wav")
        dur = len(pcm) / rate
        call_dur = (d["ended_at"] - d["answered_at"]) / 1000
        t.measure(f"recording_{c['id']}", {"channels": ch, "rate": rate, "seconds": round(dur, 2),
                                           "answered_to_ended_s": call_dur})
        check(ch == 2 and width == 2 and rate == 16000, f"recording: {ch} channels, {width * 8} bit, {rate} Hz")
        check(abs(dur - call_dur) < 1.0, f"recording {dur:.2f} s vs call {call_dur:.2f} s (answered to ended)")
        left, right = envelope(pcm[:, 0], rate), envelope(pcm[:, 1], rate)
        sa, sb = spans[0]
        # sipp streams from its ACK (about the answer, the recording's start), within a few hundred ms
        cw = left[int(max(0, sa - 0.5) * 100):int((sb + 1.0) * 100)]
        check(cw.size and cw.max() > 1000, f"caller channel: no speech where SIPp spoke ({sa:.1f}-{sb:.1f} s): "
              f"max level {cw.max() if cw.size else 0:.0f}")
        check(left[:int((sa - 0.5) * 100)].max() < 300, "caller channel loud before SIPp spoke (channels swapped?)")
        g0, g1 = first_burst(right)
        old_bursts.append(g1 - g0)
        check(g0 < 2.0 and g1 - g0 > 3.0, f"Parley channel: greeting burst {g0:.2f}-{g1:.2f} s (expected a long "
              "greeting right after the answer)")
        # Range
        st, h, part = api.req("GET", f"/api/calls/{c['id']}/recording", headers={"Range": "bytes=0-99"})
        check(st == 206 and len(part) == 100 and part == data[:100] and h.get("Content-Range", "").startswith(
            "bytes 0-99/"), f"Range bytes=0-99: {st}, {len(part)} bytes, Content-Range {h.get('Content-Range')!r}")
    t.measure("old_greeting_bursts_s", [round(x, 2) for x in old_bursts])
    api.error("GET", "/api/calls/1-1", expect=404, names="1-1")
    api.error("GET", "/api/calls/1-1/recording", expect=404, names="1-1")

    # --- PUT the greeting ---
    res = api.json("PUT", "/api/config", {"agent": {"greeting": NEW_GREETING}})
    t.measure("put_config", {k: res[k] for k in ("applied", "restart_required")})
    check("agent.greeting" in res["applied"], f"PUT: applied {res['applied']}")
    check(res["config"]["agent"]["greeting"] == NEW_GREETING, "PUT response's config lacks the new greeting")
    check(api.json("GET", "/api/config")["agent"]["greeting"] == NEW_GREETING, "GET after PUT: old greeting")
    check(overrides.is_file() and stat.S_IMODE(overrides.stat().st_mode) == 0o600,
          f"overrides file {overrides} missing or not 0600")
    wait_until(lambda: any(k == "config_changed" for k, _ in sse.events), 5, what="a config_changed event")
    r = t.sipp("uac_basic.xml", p.sip_addr, duration_ms=4000, timeout=20)
    check(r.rc == 0 and r.successful == 1, f"call after the PUT failed: {r.errors()[-1500:]}")
    time.sleep(0.5)
    newest = api.json("GET", "/api/calls?limit=1")["calls"][0]
    check(newest["id"] not in ids, "the call after the PUT is not in the list")
    st, _, data = api.req("GET", f"/api/calls/{newest['id']}/recording")
    check(st == 200, f"recording of the call after the PUT: {st}")
    _, _, rate, pcm = read_rec(data, t.dir / "rec-new-greeting.wav")
    g0, g1 = first_burst(envelope(pcm[:, 1], rate))
    t.measure("new_greeting_burst_s", round(g1 - g0, 2))
    check(g1 - g0 < 0.4 * min(old_bursts), f"the call after PUT agent.greeting={NEW_GREETING!r} still hears a long "
          f"greeting: {g1 - g0:.2f} s vs {min(old_bursts):.2f} s before")

    # --- POST /api/calls + DELETE ---
    t.speech_ulaw("this is the callee speaking, hello hello", seconds=None, name="target")

    def start_uas():
        uport = free_port()
        u = t.sipp_start("uas_answer_wait_bye.xml", None, local_port=uport, timeout=40)
        wait_until(lambda: not _udp_free(uport) or u.proc.poll() is not None, 10, what="sipp UAS to listen")
        check(u.proc.poll() is None, "sipp UAS exited at once")
        return u, f"sip:callee@127.0.0.1:{uport}"

    uas, uri = start_uas()
    res = api.json("POST", "/api/calls", {"to": uri, "first_message": "This is Parley calling about your order."},
                   expect=201)
    oid = res["id"]
    t.measure("outbound_id", oid)

    # Right after the 201 the call is live (the server answers from the runtime until the store has it): no 404.
    d = api.json("GET", f"/api/calls/{oid}")
    check(d["id"] == oid and d["direction"] == "outbound" and d["live"] is True, f"GET right after POST: {d}")

    def answered_outbound():
        d = api.json("GET", f"/api/calls/{oid}")
        return d if d.get("answered_at") else None
    d = wait_until(answered_outbound, 15, interval=0.3, what="the outbound call to be answered")
    check(d["direction"] == "outbound" and d["live"] is True, f"outbound call: {d}")
    check(oid in [c["id"] for c in api.json("GET", "/api/calls?direction=outbound")["calls"]],
          "the outbound call is not listed with direction=outbound")
    time.sleep(1.0)
    res = api.json("DELETE", f"/api/calls/{oid}", expect=202)
    check(res.get("status") == "hanging_up" and res.get("id") == oid, f"DELETE: {res}")
    d = wait_until(lambda: (lambda x: x if x.get("ended_at") else None)(api.json("GET", f"/api/calls/{oid}")),
                   10, interval=0.3, what="the outbound call to end after DELETE")
    t.measure("outbound_end_reason", d["end_reason"])
    check(d["end_reason"] == "api_hangup" and d["live"] is False, f"after DELETE: {d}")
    wait_until(lambda: any(k == "call_ended" and e.get("id") == oid for k, e in sse.events), 5,
               what="call_ended event of the outbound call")
    api.error("DELETE", f"/api/calls/{oid}", expect=404, names=oid)
    ru = uas.wait()
    check(ru.rc == 0, f"sipp UAS did not get the BYE: rc={ru.rc}\n{ru.errors()[-1500:]}")

    # --- the CLI ---
    cli = [str(t.parley_bin)]
    cli_api = ["--api", base, "--token", token]

    def run_cli(*args, timeout=20):
        res = subprocess.run(cli + list(args) + cli_api, capture_output=True, text=True, timeout=timeout,
                             cwd=t.dir)
        log(f"parley {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}")
        api.bodies.append((f"cli {args[0]}", (res.stdout + res.stderr).encode()))
        return res
    c = run_cli("calls")
    check(c.returncode == 0 and all(i in c.stdout for i in ids + [oid, newest["id"]]),
          f"parley calls: rc {c.returncode}, ids missing in:\n{c.stdout}")
    c = run_cli("show", ids[0])
    check(c.returncode == 0 and ids[0] in c.stdout and "#1" in c.stdout and "voice-to-voice" in c.stdout,
          f"parley show: rc {c.returncode}:\n{c.stdout}")
    c = run_cli("hangup", "1-1")
    check(c.returncode != 0 and "404" in c.stderr and "1-1" in c.stderr,
          f"parley hangup <unknown>: rc {c.returncode}, stderr {c.stderr!r}")
    uas, uri = start_uas()
    c = run_cli("call", uri, "-m", "Hello from the command line.")
    cid = c.stdout.strip()
    check(c.returncode == 0 and re.fullmatch(r"\d+-\d+", cid), f"parley call: rc {c.returncode}, stdout {c.stdout!r}")
    wait_until(lambda: api.json("GET", f"/api/calls/{cid}").get("answered_at"), 15, interval=0.3,
               what="the CLI's call to be answered")
    c = run_cli("hangup", cid)
    check(c.returncode == 0, f"parley hangup {cid}: rc {c.returncode}")
    wait_until(lambda: api.json("GET", f"/api/calls/{cid}").get("ended_at"), 10, interval=0.3,
               what="the CLI's call to end")
    uas.wait()

    # --- secrets: every route ---
    for path in ("/api/config", "/api/lines", "/api/calls", "/api/stats/latency", "/metrics", "/readyz",
                 f"/api/calls/{ids[0]}", f"/api/calls/{oid}"):
        api.req("GET", path)
    api.json("PUT", "/api/config", {"lines": [{"name": "office", "password": SECRET}]})
    sse.close()
    leaks = [what for what, body in api.bodies if SECRET.encode() in body]
    leaks += [f"SSE {k}" for k, d in sse.events if SECRET in json.dumps(d)]
    check(not leaks, f"the line's password is in the responses of: {leaks}")
    p.stop()
    check(SECRET not in p.text(), "the line's password is in Parley's log")

    # --- restart on the same files: token not printed again, the greeting survives ---
    p2 = t.conversation(name="parley2", **sections)
    wait_http(base)  # the restarted Parley
    check(token_file.read_text().strip() == token, "the token file changed at the restart")
    check(token not in p2.text(), "the token was printed again at the second start")
    cfg = api.json("GET", "/api/config")
    check(cfg["agent"]["greeting"] == NEW_GREETING, f"after the restart: greeting {cfg['agent']['greeting']!r}")
    check(api.json("GET", "/api/calls")["total"] == 6, "the restarted Parley does not list the 6 stored calls (3 + 1 inbound, 2 outbound)")
    check(all(SECRET.encode() not in b for _, b in api.bodies[-3:]), "password in a response after the restart")
    p2.stop()
    check(SECRET not in p2.text(), "the line's password is in the restarted Parley's log")
    check(SECRET not in overrides.read_text() or stat.S_IMODE(overrides.stat().st_mode) == 0o600,
          "the overrides file holds the password and is not 0600")


if __name__ == "__main__":
    Test("api", __doc__).run(main)
