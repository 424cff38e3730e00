"""DTMF in a conversation (RFC 4733 from sipp: SIPp's own dtmf_2833_*.pcap captures replayed with
play_pcap_audio, which needs root; the scenarios are generated from uac_dtmf_2833.xml into the work dir).

(a) After the greeting the caller presses 1, 2, #: Parley logs event=dtmf digit=1, 2, # and the digits
    reach the model as one turn: event=turn trigger=dtmf user="[keypad 1 2]" ('#' ends the entry), and
    Parley answers it (sound in its RTP after the '#').
(b) A second Parley with --set agent.dtmf_actions=#=hang_up: pressing # makes Parley say its goodbye (sound
    in its RTP after the '#', about as long as the goodbye) and then send BYE, which the scenario (like
    uac_wait_bye.xml) waits for and answers; no turn goes to the model.
"""
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (SCENARIOS, Test, call_flows, check, flow_streams, packet_levels, parse_rtp,  # noqa: E402
                        sip_first_line, sip_messages, sound_segments, turn_events, wait_bye_tail)

PCAP = {d: Path("/usr/share/sip-tester") / f"dtmf_2833_{n}.pcap" for d, n in (("1", "1"), ("2", "2"), ("#", "pound"))}
GREETING_WAIT_MS = 3300    # the default greeting is ~2.75 s: press keys after it
SOUND = 300.0

BYE_AND_END = """  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

def scenario(t: Test, name: str, keys: str, wait_ms: int, wait_for_bye: bool) -> Path:
    """uac_dtmf_2833.xml's INVITE/ACK, then after the greeting the keys 600 ms apart, then either `wait_ms`
    and our BYE, or a BYE from Parley (within 15 s) answered with 200."""
    src = (SCENARIOS / "uac_dtmf_2833.xml").read_text()
    head = src[:src.index('<pause milliseconds="500"/>')]
    body = [f'  <pause milliseconds="{GREETING_WAIT_MS}"/>']
    for i, k in enumerate(keys):
        if i:
            body.append('  <pause milliseconds="600"/>')
        body.append(f'  <nop><action><exec play_pcap_audio="{PCAP[k]}"/></action></nop>')
    if not wait_for_bye:
        body.append(f'  <pause milliseconds="{wait_ms}"/>')
    xml = head + "\n".join(body) + "\n" + (wait_bye_tail(15000) if wait_for_bye else BYE_AND_END)
    path = t.dir / f"{name}.xml"
    path.write_text(re.sub(r'<scenario name="[^"]*">', f'<scenario name="{name}">', xml, count=1))
    return path


def parley_audio(pkts, p):
    flows = call_flows(p)
    check(list(flows) == ["1"], f"expected one answered call, got {flows}")
    out, _ = flow_streams(pkts, *flows["1"])
    check(out, "no RTP from Parley in the capture")
    return out[0].ts, sound_segments(packet_levels(out), SOUND, gap=0.3)


def dtmf_times(pkts, p) -> list[float]:
    """Capture times of the first telephone-event packet of each key press sent to Parley (call 1)."""
    flows = call_flows(p)
    check("1" in flows, f"call 1 not answered: {flows}")
    local, _ = flows["1"]
    te = [r for r in (parse_rtp(u) for u in pkts if u.dport == local) if r and r.pt == 101]
    firsts, last_ts = [], None
    for x in te:
        if x.rtp_ts != last_ts:
            firsts.append(x.ts)
            last_ts = x.rtp_ts
    return firsts


def main(t: Test):
    check(os.geteuid() == 0, "this test needs root: sipp's play_pcap_audio sends through a raw socket")
    for f in PCAP.values():
        check(f.is_file(), f"missing {f} (package sip-tester)")

    # (a) digits to the model
    p = t.conversation(name="parley-a", max_tokens=6)
    cap = t.capture(f"(udp portrange {p.rtp_lo}-{p.rtp_hi}) or udp port {p.sip_port}", "a")
    r = t.sipp(str(scenario(t, "uac_keys_12pound", "12#", 9000, False)), p.sip_addr, timeout=40)
    t.expect(r.rc == 0 and r.successful == 1, f"(a) sipp rc={r.rc} successful={r.successful}\n{r.errors()[-1500:]}")
    p.wait_event("conversation_end", timeout=15)
    pkts = cap.stop()
    digits = [e.get("digit") for e in p.events("dtmf")]
    t.measure("a.dtmf_digits", digits)
    keys = dtmf_times(pkts, p)
    t.measure("a.key_presses_in_capture", len(keys))
    turns = turn_events(p)
    t.measure("a.turn_lines", [e["_line"].split("event=", 1)[1] for e in turns])
    t.expect(digits == ["1", "2", "#"], f"(a) Parley logged event=dtmf digits {digits}, expected 1, 2, #")
    dt = [e for e in turns if e.get("trigger") == "dtmf"]
    t.expect(len(dt) == 1 and dt[0].get("user") == "[keypad 1 2]",
             f"(a) expected one turn trigger=dtmf user=\"[keypad 1 2]\", got "
             f"{[(e.get('trigger'), e.get('user')) for e in turns]}")
    t0, segs = parley_audio(pkts, p)
    t.measure("a.parley_sound_segments_s", [(round(a - t0, 2), round(b - t0, 2)) for a, b in segs])
    if len(keys) == 3:
        after = [a for a, b in segs if a > keys[2]]
        t.measure("a.reply_onset_after_pound_ms", round((after[0] - keys[2]) * 1000) if after else None)
        t.expect(after, "(a) no reply sound from Parley after the '#'")
        if dt:
            t.measure("a.turn_first_rtp_ms", dt[0].get("first_rtp_ms"))
    else:
        t.expect(False, f"(a) {len(keys)} key presses reached Parley in the capture, expected 3")
    p.stop()

    # (b) '#' = hang up
    goodbye = "Thank you for calling. Goodbye."
    p = t.conversation(name="parley-b", max_tokens=6, sets=["agent.dtmf_actions=#=hang_up"],
                       agent={"goodbye": goodbye})
    cap = t.capture(f"(udp portrange {p.rtp_lo}-{p.rtp_hi}) or udp port {p.sip_port}", "b")
    r = t.sipp(str(scenario(t, "uac_pound_wait_bye", "#", 0, True)), p.sip_addr, timeout=40)
    t.expect(r.rc == 0 and r.successful == 1,
             f"(b) sipp rc={r.rc} successful={r.successful}: no BYE from Parley after '#'?\n{r.errors()[-1500:]}")
    p.wait_event("conversation_end", timeout=15)
    pkts = cap.stop()
    digits = [e.get("digit") for e in p.events("dtmf")]
    t.measure("b.dtmf_digits", digits)
    ended = p.events("call_ended")
    t.measure("b.call_ended", [e["_line"].split("event=", 1)[1] for e in ended])
    t.measure("b.turn_lines", [e["_line"].split("event=", 1)[1] for e in turn_events(p)])
    t.expect(digits == ["#"], f"(b) digits {digits}, expected #")
    t.expect(not turn_events(p, trigger="dtmf"), "(b) '#' with an action still went to the model as a turn")
    byes = [u for u, m in sip_messages(pkts, p.sip_port)
            if u.sport == p.sip_port and sip_first_line(m).startswith("BYE ")]
    t.expect(len(byes) >= 1, "(b) Parley sent no BYE after '#'")
    keys = dtmf_times(pkts, p)
    t0, segs = parley_audio(pkts, p)
    t.measure("b.parley_sound_segments_s", [(round(a - t0, 2), round(b - t0, 2)) for a, b in segs])
    if keys and byes:
        bye_t = byes[0].ts
        said = [(a, b) for a, b in segs if keys[0] < a < bye_t]
        t.measure("b.pound_to_bye_ms", round((bye_t - keys[0]) * 1000))
        t.measure("b.goodbye_sound_s", [(round(a - keys[0], 2), round(b - keys[0], 2)) for a, b in said])
        t.expect(said and said[0][0] - keys[0] < 1.0,
                 "(b) Parley said nothing (within 1 s) between the '#' and its BYE")
        if said:
            t.expect(said[-1][1] <= bye_t + 0.05, "(b) Parley was still talking when it sent BYE")
            # espeak at 170 wpm: "Thank you for calling. Goodbye." is ~2 s
            t.expect(1.0 <= said[-1][1] - said[0][0] <= 4.0,
                     f"(b) the goodbye lasted {said[-1][1] - said[0][0]:.2f} s (expected ~2 s)")
    hang = [e for e in ended if "dtmf" in e.get("reason", "")]
    t.expect(hang, f"(b) call_ended reason is not the DTMF hang-up: {[e.get('reason') for e in ended]}")
    p.stop()


if __name__ == "__main__":
    Test("conversation_dtmf", __doc__).run(main)
