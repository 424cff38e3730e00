"""Registration through a real registrar: Kamailio (db_text subscriber 1001/secret, digest auth required
for REGISTER, min_expires 5) on a free loopback port. Parley registers a [[line]] with expires=10:
event=line_registered in its log, and the capture must show at least two successful (200 OK) REGISTERs
with a non-zero expiry within 15 s (the first and a refresh). Then sipp calls sip:1001@<kamailio>; Kamailio
looks up the location and relays to Parley, which answers in echo mode (sipp succeeds, the echo carries
sound). On SIGTERM Parley un-registers: a REGISTER with Expires: 0 (or ;expires=0 / Contact: *) must be
in the capture. Kamailio is always stopped at the end."""
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Kamailio, Test, check, log, rtp_streams, sip_first_line, sip_header,  # noqa: E402
                        sip_messages, stream_speech_packets, wait_until)

USER, PASSWORD, DOMAIN = "1001", "secret", "127.0.0.1"
EXPIRES = 10

def register_expiry(msg: str):
    """The expiry a REGISTER asks for: Contact ;expires= wins over Expires:; '*' means 0; None if unstated."""
    contact = sip_header(msg, "Contact", "m") or ""
    if contact.strip() == "*":
        return 0
    m = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.I)
    if m:
        return int(m.group(1))
    e = sip_header(msg, "Expires")
    return int(e) if e and e.strip().isdigit() else None


def main(t: Test):
    kam = Kamailio(t, {USER: PASSWORD}, domain=DOMAIN).start()  # stopped at cleanup in any case
    kport = kam.port
    t.speech_ulaw("hello, calling through kamailio", seconds=1.0)

    p = t.parley(line=[{"name": "office", "registrar": f"sip:127.0.0.1:{kport}", "user": USER,
                        "password": PASSWORD, "transport": "udp", "expires": EXPIRES}], start=False)
    cap = t.capture(f"udp port {kport} or udp port {p.sip_port} or udp src portrange {p.rtp_lo}-{p.rtp_hi}",
                    "kamailio")
    p.start()
    t_start = time.monotonic()
    ev = p.wait_event("line_registered", timeout=10)
    t.measure("line_registered", ev[0]["_line"].split("event=", 1)[-1])
    # What operations see of it: /api/lines, /readyz and the registration gauge.
    def api_line():
        st, body = p.api_get("/api/lines")
        lines = json.loads(body)["lines"] if st == 200 else []
        return lines if lines and lines[0].get("registered") else None
    lines = wait_until(api_line, 5, what="GET /api/lines to show the line registered")
    t.measure("api_lines", lines)
    check(len(lines) == 1 and lines[0]["name"] == "office" and lines[0]["status"] == "registered",
          f"/api/lines: {lines}")
    st, body = p.api_get("/readyz", auth=False)
    check(st == 200 and json.loads(body)["lines_registered"] == 1, f"/readyz with the line registered: {st} {body!r}")
    st, body = p.api_get("/metrics", auth=False)
    check('parley_line_registered{line="office"} 1' in body.decode(), "/metrics lacks parley_line_registered 1")

    r = t.sipp("uac_echo.xml", f"127.0.0.1:{kport}", service=USER, duration_ms=1600, timeout=20)
    t.measure("call_via_kamailio_sipp_rc", r.rc)

    # stay registered long enough for a refresh (expires=10): 16 s after start
    left = 16.0 - (time.monotonic() - t_start)
    if left > 0:
        time.sleep(left)
    p.check_alive("while registered")
    t.measure("line_registered_events", len(p.events("line_registered")))
    p.stop()
    time.sleep(1.0)  # the un-REGISTER and its 200 (and a possible challenge round) may still be in flight
    pkts = cap.stop()
    kam.stop()

    msgs = sip_messages(pkts, kport)
    regs = {}  # (Call-ID, CSeq number) -> (time, expiry) of Parley's REGISTERs
    for u, m in msgs:
        if u.dport == kport and sip_first_line(m).startswith("REGISTER "):
            key = (sip_header(m, "Call-ID", "i"), (sip_header(m, "CSeq") or "").split()[0])
            regs[key] = (u.ts, register_expiry(m), "Authorization" in m)
    ok_regs, ok_unregs, responses = [], [], []
    for u, m in msgs:
        if u.sport == kport and sip_first_line(m).startswith("SIP/2.0") and \
                (sip_header(m, "CSeq") or "").endswith("REGISTER"):
            responses.append(sip_first_line(m)[8:11])
            if sip_first_line(m).startswith("SIP/2.0 200"):
                key = (sip_header(m, "Call-ID", "i"), (sip_header(m, "CSeq") or "").split()[0])
                ts, exp, _ = regs.get(key, (u.ts, None, False))
                (ok_unregs if exp == 0 else ok_regs).append(u.ts)
    unreg_requests = [v for v in regs.values() if v[1] == 0]
    t0 = min(v[0] for v in regs.values()) if regs else 0
    t.measure("register_requests", [(round(ts - t0, 2), exp, "auth" if a else "-") for ts, exp, a in
                                    sorted(regs.values())])
    t.measure("register_responses", responses)
    t.measure("successful_registrations_at_s", [round(x - t0, 2) for x in ok_regs])
    t.measure("unregister_requests", len(unreg_requests))
    t.measure("unregister_200", len(ok_unregs))

    check(r.rc == 0 and r.successful == 1,
          f"the call to sip:{USER}@127.0.0.1:{kport} via Kamailio failed: rc={r.rc}\n{r.errors()[-1500:]}")
    streams = rtp_streams(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    sound = [stream_speech_packets(s) for s in streams.values()]
    t.measure("echo_speech_packets", sound)
    check(sound and max(sound) >= 10, "the call via Kamailio got no echoed sound from Parley")
    check(len(ok_regs) >= 2, f"expected >= 2 successful REGISTERs (first + refresh), got {len(ok_regs)}")
    check(ok_regs[1] - ok_regs[0] <= 15.0,
          f"the refresh came {ok_regs[1] - ok_regs[0]:.1f} s after the first registration (expires={EXPIRES})")
    check(unreg_requests, "no un-REGISTER (expires 0) from Parley after SIGTERM")
    if not ok_unregs:
        log("note: the un-REGISTER got no 200 OK in the capture")


if __name__ == "__main__":
    Test("kamailio_register", __doc__).run(main)
