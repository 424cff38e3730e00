"""DTMF reaches Parley (echo handler), both ways a caller can send it:
 (a) RFC 4733: sipp (uac_dtmf_2833.xml) offers PCMU + telephone-event/8000 on payload type 101 (the type
     used by SIPp's shipped captures) and replays /usr/share/sip-tester/dtmf_2833_1.pcap, _5.pcap and
     _pound.pcap with play_pcap_audio (raw socket: root) 1 s apart. Each key is 10 packets (7 updates, 3
     end-of-event retransmissions). The capture must show those 30 packets reaching Parley's RTP port, and
     Parley's log must show event=dtmf_received for that call exactly once per key press, in order: 1, 5, #,
     and its event=call_ended must count dtmf_rx=3.
 (b) SIP INFO: sipp (uac_dtmf_info.xml) sends INFO with Content-Type: application/dtmf-relay and body
     "Signal=7\\r\\nDuration=160\\r\\n" inside the dialog: the INFO must get 200 (sipp checks it, and the
     capture must show it), and Parley logs event=dtmf_received ... digit=7 via=info, once, for that call.
Both calls must be answered and end normally (sipp exit 0). Parley sending DTMF is not reachable from
outside (no handler sends it yet) and is not tested here."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, TestFailure, check, rtp_packets, sip_first_line, sip_header, sip_messages,  # noqa: E402
                        wait_until)

PCAPS = [Path("/usr/share/sip-tester") / f"dtmf_2833_{k}.pcap" for k in ("1", "5", "pound")]
TE_PT = 101


def call_of(p, sip_call_id: str) -> str | None:
    """Parley's call number for a SIP Call-ID (from event=call_incoming)."""
    ev = [e for e in p.events("call_incoming") if e.get("sip_call_id") == sip_call_id]
    return ev[-1].get("call") if ev else None


def sipp_call_id(r) -> str | None:
    """The Call-ID of the (single) call in a sipp messages trace."""
    for line in r.messages().splitlines():
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    return None


def main(t: Test):
    check(os.geteuid() == 0, "this test needs root: sipp's play_pcap_audio sends through a raw socket")
    for f in PCAPS:
        check(f.is_file(), f"missing {f} (package sip-tester)")
    p = t.parley(call={"handler": "echo"})
    cap = t.capture(f"(udp dst portrange {p.rtp_lo}-{p.rtp_hi}) or udp port {p.sip_port}", "dtmf")

    # (a) RFC 4733
    r = t.sipp("uac_dtmf_2833.xml", p.sip_addr, timeout=30)
    t.measure("rfc4733.sipp_rc", r.rc)
    t.expect(r.rc == 0 and r.successful == 1,
             f"RFC 4733 call: sipp rc={r.rc}, successful={r.successful}\n{r.errors()[-1500:]}")
    cid = sipp_call_id(r)
    call_a = call_of(p, cid) if cid else None
    check(call_a is not None, f"RFC 4733 call: no event=call_incoming in Parley's log for Call-ID {cid}")
    # the digits are logged by the media thread as the end packets arrive: by now (sipp hung up 1.5 s after
    # the last key) they are all in; wait a little anyway for the log to be flushed
    try:
        wait_until(lambda: len(p.events("dtmf_received", call=call_a)) >= 3, 3.0, what="3 digits")
    except TestFailure:
        pass  # the strict checks below say what is missing
    got_a = p.events("dtmf_received", call=call_a)
    digits_a = [e.get("digit") for e in got_a]
    t.measure("rfc4733.digits", digits_a)
    t.measure("rfc4733.log_lines", [e["_line"].split("event=", 1)[-1] for e in got_a])
    ended_a = p.events("call_ended", call=call_a)
    t.measure("rfc4733.call_ended_dtmf_rx", [e.get("dtmf_rx") for e in ended_a])

    # (b) SIP INFO
    r2 = t.sipp("uac_dtmf_info.xml", p.sip_addr, timeout=20)
    t.measure("info.sipp_rc", r2.rc)
    t.expect(r2.rc == 0 and r2.successful == 1,
             f"SIP INFO call: sipp rc={r2.rc}, successful={r2.successful} (the INFO must get 200)\n"
             f"{r2.errors()[-1500:]}")
    cid2 = sipp_call_id(r2)
    call_b = call_of(p, cid2) if cid2 else None
    check(call_b is not None, f"SIP INFO call: no event=call_incoming in Parley's log for Call-ID {cid2}")
    got_b = p.events("dtmf_received", call=call_b)
    t.measure("info.log_lines", [e["_line"].split("event=", 1)[-1] for e in got_b])
    p.check_alive("after the DTMF calls")

    pkts = cap.stop()
    te = [x for x in rtp_packets(pkts, dst_ports=range(p.rtp_lo, p.rtp_hi + 1)) if x.pt == TE_PT]
    t.measure("rfc4733.telephone_event_packets_to_parley", len(te))
    t.measure("rfc4733.telephone_event_source_ports", sorted({x.sport for x in te}))
    info_resp = [sip_first_line(m) for u, m in sip_messages(pkts, p.sip_port)
                 if u.sport == p.sip_port and (sip_header(m, "CSeq") or "").endswith(" INFO")]
    t.measure("info.responses", info_resp)

    # (a) checks
    t.expect(len(te) == 10 * len(PCAPS), f"RFC 4733: {len(te)} telephone-event packets (pt {TE_PT}) reached "
                                         f"Parley's RTP ports, expected {10 * len(PCAPS)} (sipp did not play them?)")
    t.expect(digits_a == ["1", "5", "#"],
             f"RFC 4733: Parley logged digits {digits_a} for call {call_a}, expected exactly ['1', '5', '#'] "
             "(each key press once, in order)")
    t.expect(all(e.get("via") in (None, "rtp", "rfc4733") for e in got_a),
             f"RFC 4733 digits logged with via={[e.get('via') for e in got_a]}")
    t.expect([e.get("dtmf_rx") for e in ended_a] == ["3"],
             f"RFC 4733: event=call_ended of call {call_a} says dtmf_rx={[e.get('dtmf_rx') for e in ended_a]}, "
             "expected 3")
    # (b) checks
    t.expect(info_resp and all(x.startswith("SIP/2.0 200") for x in info_resp),
             f"SIP INFO: Parley's responses to the INFO: {info_resp}, expected 200")
    t.expect([(e.get("digit"), e.get("via")) for e in got_b] == [("7", "info")],
             f"SIP INFO: Parley logged {[(e.get('digit'), e.get('via')) for e in got_b]} for call {call_b}, "
             "expected exactly one digit=7 via=info")
    p.stop()


if __name__ == "__main__":
    Test("dtmf", __doc__).run(main)
