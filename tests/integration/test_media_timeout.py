"""Media timeout: with media.timeout_s=2, a call in which sipp sends no RTP must be ended by Parley with a
BYE about 2 s after the call started (accepted 1.8..5.0 s after the ACK, from a capture); sipp answers 200."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, sip_first_line, sip_header, sip_messages  # noqa: E402


def main(t: Test):
    p = t.parley(media={"timeout_s": 2}, call={"handler": "echo"})
    cap = t.capture(f"udp port {p.sip_port}", "sip")
    r = t.sipp("uac_wait_bye.xml", p.sip_addr, timeout=20)
    p.check_alive("after the call")
    pkts = cap.stop()
    t.measure("sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"no BYE from Parley: sipp rc={r.rc}\n{r.errors()[-1500:]}")
    msgs = sip_messages(pkts, p.sip_port)
    ack = [u.ts for u, m in msgs if u.dport == p.sip_port and sip_first_line(m).startswith("ACK ")]
    bye = [u.ts for u, m in msgs if u.sport == p.sip_port and sip_first_line(m).startswith("BYE ")]
    ok = [u for u, m in msgs if u.dport == p.sip_port and sip_first_line(m).startswith("SIP/2.0 200")
          and (sip_header(m, "CSeq") or "").endswith("BYE")]
    check(ack and bye, f"capture: ACKs {len(ack)}, BYEs from Parley {len(bye)}")
    dt = bye[0] - ack[0]
    t.measure("bye_after_ack_s", round(dt, 2))
    check(ok, "no 200 OK for Parley's BYE in the capture")
    check(1.8 <= dt <= 5.0, f"Parley's BYE came {dt:.2f} s after the ACK; timeout_s=2: expected 1.8..5.0 s")
    ended = p.events("call_ended")
    t.measure("call_ended_events", [e.get("reason") for e in ended])
    p.stop()


if __name__ == "__main__":
    Test("media_timeout", __doc__).run(main)
