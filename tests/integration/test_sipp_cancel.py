"""CANCEL while ringing: with call.answer_delay_ms=3000 sipp sends INVITE, gets 180, sends CANCEL and must
get 200 (CANCEL) and 487 (INVITE); Parley must never answer the cancelled INVITE (no 200 for it in a
capture, through the end of the answer delay); then a normal call is still answered."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, sip_first_line, sip_header, sip_messages  # noqa: E402


def main(t: Test):
    p = t.parley(call={"handler": "echo", "answer_delay_ms": 3000})
    cap = t.capture(f"udp port {p.sip_port}", "sip")
    r = t.sipp("uac_cancel.xml", p.sip_addr, timeout=15)
    t.measure("cancel_sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"CANCEL scenario failed: rc={r.rc}\n{r.errors()[-2000:]}")
    time.sleep(3.5)  # past the answer delay: a late 200 for the cancelled INVITE would show up now
    p.check_alive("after the CANCEL")
    pkts = cap.stop()

    msgs = sip_messages(pkts, p.sip_port)
    from_parley = [(u, m) for u, m in msgs if u.sport == p.sip_port]
    lines = [f"{sip_first_line(m)} ({sip_header(m, 'CSeq')})" for _, m in from_parley]
    t.measure("parley_sent", lines)
    inv_200 = [m for _, m in from_parley if sip_first_line(m).startswith("SIP/2.0 200")
               and (sip_header(m, "CSeq") or "").endswith("INVITE")]
    check(not inv_200, "Parley sent a 200 OK for the cancelled INVITE")
    check(any(sip_first_line(m).startswith("SIP/2.0 487") for _, m in from_parley), "no 487 seen in the capture")

    t0 = time.monotonic()
    t.good_call(p, duration_ms=500, what="after the CANCEL")
    t.measure("normal_call_seconds", round(time.monotonic() - t0, 1))
    p.stop()


if __name__ == "__main__":
    Test("sipp_cancel", __doc__).run(main)
