"""Registrar restart with two lines: Kamailio (digest auth over db_text, subscribers 1001 and 1002, in-memory
location table, min_expires 5) on a free loopback port; Parley with two [[line]]s, "a" (1001) and "b"
(1002), expires=10 (the smallest Parley accepts).
  1. Both lines register: event=line_registered line=a and line=b. A call by sipp through Kamailio to
     1001 is answered by Parley on line a (baseline).
  2. Kamailio is stopped (SIGTERM, every process gone, port free). When its refresh fails, Parley must log
     the failure of each line (event=line_register_failed) and retry with growing delays: for each line at
     least three event=line_retry (so at least two retried REGISTERs have failed too), their in_ms
     non-decreasing and not all equal, and no event=line_registered while the registrar is down.
  3. Kamailio is started again on the same port (a fresh instance: the location table is empty). Within
     30 s both lines are registered again (a new event=line_registered for a and for b, and Kamailio logs
     both AoRs as registered), and a call by sipp through Kamailio to 1002 is answered by Parley in echo
     mode (sipp succeeds, the echo carries sound) and Parley's event=call_incoming for it shows line=b.
Printed: the time from the SIGTERM to Kamailio to the first failure Parley logs, the retry delays, the
outage-to-re-registration times (from the SIGTERM, and from the restart), and (not checked) the user part
of the Contact in Parley's 200 OK to each INVITE next to the called user."""
import re
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Kamailio, Test, check, log, rtp_streams, sip_first_line, sip_header,  # noqa: E402
                        sip_messages, stream_speech_packets, wait_until)

LINES = {"a": ("1001", "secret-a"), "b": ("1002", "secret-b")}
EXPIRES = 10
FAIL_TIMEOUT = 60.0       # refresh after <= 10 s, then a UDP transaction may take 32 s (timer F) to fail
MIN_RETRIES = 3       # 1000, 2000, 4000 ms: two retried REGISTERs have failed
REREGISTER_TIMEOUT = 30.0


def log_time(ev: dict) -> float:
    """The timestamp of a Parley log line (2026-01-01T12:00:00.123 level ...), as seconds since the epoch."""
    return datetime.strptime(ev["_line"][:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def uri_user(uri: str) -> str:
    m = re.search(r"sips?:([^@;>]+)@", uri)
    return m.group(1) if m else ""


def short(ev: dict) -> str:
    return ev["_line"].split("event=", 1)[-1]


def main(t: Test):
    kam = Kamailio(t, {user: pw for user, pw in LINES.values()}).start()
    t.speech_ulaw("hello, calling through kamailio again", seconds=1.0)
    p = t.parley(line=[{"name": name, "registrar": f"sip:{kam.addr}", "user": user, "password": pw,
                        "transport": "udp", "expires": EXPIRES} for name, (user, pw) in LINES.items()],
                 start=False)
    cap = t.capture(f"udp port {kam.port} or udp port {p.sip_port} or udp src portrange {p.rtp_lo}-{p.rtp_hi}",
                    "kamailio_restart")
    p.start()

    # 1. both lines register; a baseline call to 1001 lands on line a
    for name in LINES:
        ev = p.wait_event("line_registered", timeout=10, line=name)
        t.measure(f"first_registration.{name}", short(ev[0]))
    r0 = t.sipp("uac_echo.xml", kam.addr, service=LINES["a"][0], duration_ms=1500, timeout=20, name="sipp-call-1001")
    inc = p.events("call_incoming")
    t.measure("baseline_call.sipp_rc", r0.rc)
    t.measure("baseline_call.call_incoming", [short(e) for e in inc])
    t.expect(r0.rc == 0 and r0.successful == 1,
             f"baseline call to {LINES['a'][0]} via Kamailio failed: sipp rc={r0.rc}\n{r0.errors()[-1000:]}")
    t.expect(len(inc) == 1 and inc[0].get("line") == "a",
             f"baseline call to {LINES['a'][0]}: expected one event=call_incoming with line=a, got "
             f"{[e.get('line') for e in inc]}")

    # 2. registrar down
    n_reg = {name: len(p.events("line_registered", line=name)) for name in LINES}
    n_fail = {name: len(p.events("line_register_failed", line=name)) for name in LINES}
    n_retry = {name: len(p.events("line_retry", line=name)) for name in LINES}
    t_down, t_down_wall = time.monotonic(), time.time()
    log("stopping kamailio (SIGTERM)")
    kam.stop()

    def new(event, name, since):
        return p.events(event, line=name)[since[name]:]

    def failed_and_retrying():
        p.check_alive("while the registrar is down")
        return all(len(new("line_register_failed", n, n_fail)) >= 1 and
                   len(new("line_retry", n, n_retry)) >= MIN_RETRIES for n in LINES)
    try:
        wait_until(failed_and_retrying, FAIL_TIMEOUT, interval=0.1,
                   what=f"event=line_register_failed and {MIN_RETRIES} x event=line_retry for each line")
    finally:
        for name in LINES:
            t.measure(f"outage.{name}.failures", [short(e) for e in new("line_register_failed", name, n_fail)])
            t.measure(f"outage.{name}.retries", [short(e) for e in new("line_retry", name, n_retry)])
    t_failed = time.monotonic()
    first_fail = min(log_time(e) for n in LINES for e in new("line_register_failed", n, n_fail))
    t.measure("kamailio_stop_to_first_failure_s", round(first_fail - t_down_wall, 2))
    for name in LINES:
        delays = [int(e.get("in_ms", "-1")) for e in new("line_retry", name, n_retry)]
        t.measure(f"outage.{name}.retry_in_ms", delays)
        t.expect(all(d > 0 for d in delays), f"line {name}: bad in_ms in event=line_retry: {delays}")
        t.expect(all(b >= a for a, b in zip(delays, delays[1:])),
                 f"line {name}: retry delays are not non-decreasing: {delays}")
        t.expect(delays[-1] > delays[0], f"line {name}: retry delays do not grow: {delays}")
        still = new("line_registered", name, n_reg)
        t.expect(not still, f"line {name}: event=line_registered while the registrar was down: "
                            f"{[short(e) for e in still]}")
    log(f"both lines failed and retried {t_failed - t_down:.1f} s after the registrar went down")

    # 3. registrar back, same port, empty location table
    n_reg = {name: len(p.events("line_registered", line=name)) for name in LINES}
    kam.start()
    t_up, t_up_wall = time.monotonic(), time.time()
    back = {}

    def reregistered():
        p.check_alive("after the registrar came back")
        for n in LINES:
            if n not in back and new("line_registered", n, n_reg):
                back[n] = time.monotonic()
        return len(back) == len(LINES)
    try:
        wait_until(reregistered, REREGISTER_TIMEOUT, interval=0.05,
                   what="a new event=line_registered for both lines after the registrar restart")
    finally:
        for name in LINES:
            evs = new("line_registered", name, n_reg)
            t.measure(f"reregistration.{name}", [short(e) for e in evs])
            if evs:
                t.measure(f"outage_to_reregistered_s.{name}", round(log_time(evs[0]) - t_down_wall, 2))
                t.measure(f"restart_to_reregistered_s.{name}", round(log_time(evs[0]) - t_up_wall, 2))
    t.measure("outage_to_both_reregistered_s", round(max(back.values()) - t_down, 2))
    t.measure("restart_to_both_reregistered_s", round(max(back.values()) - t_up, 2))
    t.measure("retries_during_outage", {n: len(p.events("line_retry", line=n)) - n_retry[n] for n in LINES})

    def kamailio_has_both():
        text = kam.log_path.read_text(errors="replace")
        return all(f"event=registered aor=sip:{user}@" in text for user, _ in LINES.values())
    wait_until(kamailio_has_both, 5, what="the restarted Kamailio to log both AoRs as registered")

    # a call to 1002 through the restarted registrar: line b answers (echo)
    n_inc = len(p.events("call_incoming"))
    r = t.sipp("uac_echo.xml", kam.addr, service=LINES["b"][0], duration_ms=1600, timeout=20, name="sipp-call-1002")
    inc = p.events("call_incoming")[n_inc:]
    t.measure("call_after_restart.sipp_rc", r.rc)
    t.measure("call_after_restart.call_incoming", [short(e) for e in inc])
    p.check_alive("after the call through the restarted registrar")
    p.stop()
    time.sleep(1.0)  # the un-REGISTERs and their answers may still be in flight
    pkts = cap.stop()
    kam.stop()

    # informative: the Contact user of Parley's 200 OK to each INVITE, next to the called user
    invites = {sip_header(m, "Call-ID", "i"): sip_first_line(m).split()[1] for u, m in sip_messages(pkts, p.sip_port)
               if u.dport == p.sip_port and sip_first_line(m).startswith("INVITE ")}
    contacts = []
    for u, m in sip_messages(pkts, p.sip_port):
        if u.sport == p.sip_port and sip_first_line(m).startswith("SIP/2.0 200") and \
                (sip_header(m, "CSeq") or "").endswith(" INVITE"):
            ruri = invites.get(sip_header(m, "Call-ID", "i"), "?")
            contacts.append((uri_user(ruri), uri_user(sip_header(m, "Contact", "m") or "")))
    t.measure("answer_contact_users", contacts)
    check(contacts and all(called == contact for called, contact in contacts),
          f"Parley's 200 OK Contact user must be the called line's user: (called, contact) = {contacts}")

    check(r.rc == 0 and r.successful == 1,
          f"call to {LINES['b'][0]} via the restarted Kamailio failed: sipp rc={r.rc}\n{r.errors()[-1500:]}")
    check(len(inc) == 1 and inc[0].get("line") == "b",
          f"call to {LINES['b'][0]}: expected one event=call_incoming with line=b, got {[short(e) for e in inc]}")
    call_id = inc[0].get("call")
    answered = p.events("call_answered", call=call_id)
    check(answered, f"call {call_id} (line b) has no event=call_answered")
    port = int(answered[0].get("local_port", "0"))
    streams = rtp_streams([u for u in pkts if u.ts >= t_up_wall], src_ports={port})  # not the baseline call
    sound = [stream_speech_packets(s) for s in streams.values()]
    t.measure("call_after_restart.echo_speech_packets", sound)
    check(sound and max(sound) >= 10, f"the call to {LINES['b'][0]} got no echoed sound from Parley "
                                      f"(RTP from port {port}: {sound})")


if __name__ == "__main__":
    Test("kamailio_restart", __doc__).run(main)
