"""OPTIONS and re-INVITE: OPTIONS gets 200; during a call a re-INVITE with a=sendonly (hold) gets 200 with
a=recvonly, then a re-INVITE a=sendrecv (unhold) with a CHANGED media port gets 200 (sendrecv), and from
then on Parley's RTP must go to the new port (checked in a capture; sipp sends no RTP, so symmetric RTP
latching cannot hide a missed update)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, check, free_port_range, log, rtp_packets, sip_first_line, sip_header,  # noqa: E402
                        sip_messages)

GRACE_S = 0.2  # RTP already in flight when the 200 to the unhold left Parley


def main(t: Test):
    p = t.parley(call={"handler": "echo"})
    r = t.sipp("uac_options.xml", p.sip_addr, timeout=10)
    t.measure("options_sipp_rc", r.rc)
    t.expect(r.rc == 0 and r.successful == 1, f"OPTIONS did not get 200: rc={r.rc}\n{r.errors()[-1500:]}")

    mp = free_port_range(4)[0]  # sipp binds mp and mp+2: the old and the new media port
    port_a, port_b = mp, mp + 2
    cap = t.capture(f"udp port {p.sip_port} or udp src portrange {p.rtp_lo}-{p.rtp_hi}", "call")
    r = t.sipp("uac_reinvite_hold.xml", p.sip_addr, media_port=mp, timeout=20)
    p.check_alive("after the re-INVITEs")
    pkts = cap.stop()
    t.measure("reinvite_sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1,
          f"hold/unhold scenario failed (200 with a=recvonly for hold, sendrecv for unhold expected): "
          f"rc={r.rc}\n{r.errors()[-2000:]}")

    ok = {}
    for u, m in sip_messages(pkts, p.sip_port):
        if u.sport == p.sip_port and sip_first_line(m).startswith("SIP/2.0 200"):
            ok.setdefault(sip_header(m, "CSeq") or "", u.ts)
    check("2 INVITE" in ok and "3 INVITE" in ok, f"200s to the re-INVITEs not in the capture: {sorted(ok)}")
    t_hold, t_unhold = ok["2 INVITE"], ok["3 INVITE"]
    rtp = rtp_packets(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    before = [x for x in rtp if x.ts < t_hold and x.dport == port_a]
    during = [x for x in rtp if t_hold + GRACE_S < x.ts < t_unhold]
    after_a = [x for x in rtp if x.ts > t_unhold + GRACE_S and x.dport == port_a]
    after_b = [x for x in rtp if x.ts > t_unhold and x.dport == port_b]
    other = [x for x in rtp if x.dport not in (port_a, port_b)]
    t.measure("rtp_to_old_port_before_hold", len(before))
    t.measure("rtp_during_hold", len(during))
    t.measure("rtp_to_old_port_after_unhold", len(after_a))
    t.measure("rtp_to_new_port_after_unhold", len(after_b))
    t.measure("rtp_to_other_ports", len(other))
    if during:
        log(f"note: Parley sent {len(during)} RTP packets while on hold after answering a=recvonly")
    check(len(before) >= 40, f"only {len(before)} RTP packets to the first port in the 1.5 s before hold")
    check(len(after_b) >= 50, f"only {len(after_b)} RTP packets to the NEW port {port_b} in the 2 s after unhold")
    check(not after_a, f"{len(after_a)} RTP packets still went to the OLD port {port_a} after the unhold")
    check(not other, f"{len(other)} RTP packets went to ports we never offered")
    p.stop()


if __name__ == "__main__":
    Test("sipp_options_reinvite", __doc__).run(main)
