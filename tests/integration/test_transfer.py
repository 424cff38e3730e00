"""Call transfer: a caller (sipp) presses 0, which the conversation handler maps to "transfer"
(agent.dtmf_actions = ["0=transfer"], agent.transfer_target = a second sipp), sent as RFC 4733 events
(play_pcap_audio: root). Three cases, one Parley:
 (a) REFER accepted (uac_transfer_accept.xml): Parley sends REFER with Refer-To = the target; the caller
     answers 202 and a NOTIFY (Event: refer, Subscription-State: terminated, message/sipfrag
     "SIP/2.0 200 OK") which Parley must answer 200; then Parley sends BYE. Log: event=transfer_refer,
     event=transfer_result outcome=transferred status=200, event=call_ended reason=transferred.
 (b) REFER refused with 405 (uac_transfer_refuse.xml): Parley calls the target itself
     (uas_answer_wait_bye.xml answers), bridges the two calls: the caller's speech (caller.ul, streamed by
     sipp after the refusal) reaches the target through Parley, the target's speech (target.ul) reaches the
     caller: both RTP streams out of Parley carry speech whose energy envelope follows the stream that came
     in on the other leg (correlation >= 0.5). The caller hangs up: Parley sends BYE to the target (sipp
     target exits 0). Log: outcome=bridged, event=bridge_started, event=bridge_ended.
 (c) REFER refused with 603, target busy (uas_busy.xml, 486): outcome=failed status=486, the call goes
     on (no BYE from Parley; its RTP to the caller keeps flowing until the caller hangs up).
Parley must stay up and exit 0 on SIGTERM."""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (REPO, SCENARIOS, Test, _udp_free, best_lag, check, free_port, g711_decode, rms,  # noqa: E402
                        rtp_packets, sip_first_line, sip_header, sip_messages, stream_speech_packets, wait_until)

DTMF_0 = Path("/usr/share/sip-tester/dtmf_2833_0.pcap")


def find_models(t: Test) -> dict:
    """The tiny random test models (built next to the parley binary) and the Silero VAD model."""
    names = {"stt.model": "whisper-tiny-random.bin", "llm.model": "llama-tiny-random.gguf"}
    dirs = [t.parley_bin.parent.parent / "testmodels", REPO / "build" / "testmodels"]
    out = {}
    for key, name in names.items():
        found = [d / name for d in dirs if (d / name).is_file()]
        check(found, f"test model {name} not found in {[str(d) for d in dirs]} (built by parley-testmodels)")
        out[key] = str(found[0])
    vad = REPO / "third_party" / "models" / "silero-v6.2.0-ggml.bin"
    check(vad.is_file(), f"missing {vad}")
    out["stt.vad_model"] = str(vad)
    return out


def start_uas(t: Test, scenario: str, port: int, name: str):
    s = t.sipp_start(scenario, None, local_port=port, timeout=60, name=name)
    wait_until(lambda: not _udp_free(port) or s.proc.poll() is not None, 10, what=f"sipp {name} to listen")
    check(s.proc.poll() is None, f"sipp {name} exited at once: {s.files['out'].read_text(errors='replace')[-800:]}")
    return s


def caller_call_id(r) -> str | None:
    for line in r.messages().splitlines():
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    return None


def energy_series(pkts, t0: float, t1: float, step: float = 0.02) -> np.ndarray:
    """RMS of each G.711 packet placed on a capture-time grid (step s) from t0 to t1."""
    n = max(0, int((t1 - t0) / step))
    out = np.zeros(n)
    for r in pkts:
        if r.pt not in (0, 8) or not (t0 <= r.ts < t1):
            continue
        i = int((r.ts - t0) / step)
        if 0 <= i < n:
            out[i] = rms(g711_decode(r.payload, r.pt))
    return out


def main(t: Test):
    check(os.geteuid() == 0, "this test needs root: sipp's play_pcap_audio sends the DTMF through a raw socket")
    check(DTMF_0.is_file(), f"missing {DTMF_0} (package sip-tester)")
    models = find_models(t)
    # sipp streams these (raw µ-law, in its working dir = the test dir), looped
    t.speech_ulaw("one two three four five six seven eight nine ten", seconds=None, name="caller")
    t.speech_ulaw("this is the transfer target speaking, how can I help", seconds=None, name="target")

    tport = free_port()
    target_uri = f"sip:target@127.0.0.1:{tport}"
    p = t.parley(call={"handler": "conversation"},
                 stt={"model": models["stt.model"], "vad_model": models["stt.vad_model"]},
                 llm={"model": models["llm.model"], "context": 1024, "max_sequences": 2, "threads": 1,
                      "max_tokens": 16},
                 agent={"transfer_target": target_uri, "dtmf_actions": ["0=transfer"]})
    cap = t.capture(f"udp portrange {p.rtp_lo}-{p.rtp_hi} or udp port {p.sip_port}", "transfer")

    # (a) REFER accepted
    ra = t.sipp("uac_transfer_accept.xml", p.sip_addr, timeout=40, name="a-caller")
    t.expect(ra.rc == 0 and ra.successful == 1,
             f"(a) REFER accepted: caller sipp rc={ra.rc} (expects REFER, 200 to its NOTIFY, then BYE)\n"
             f"{ra.errors()[-1500:]}")
    cid_a = caller_call_id(ra)
    inc_a = [e for e in p.events("call_incoming") if e.get("sip_call_id") == cid_a]
    check(inc_a, f"(a) no event=call_incoming for Call-ID {cid_a}")
    call_a = inc_a[-1]["call"]
    res_a = p.wait_event("transfer_result", call=call_a, timeout=5)
    t.measure("a.transfer_result", res_a[-1]["_line"].split("event=", 1)[-1])
    t.expect(res_a[-1].get("outcome") == "transferred" and res_a[-1].get("status") == "200",
             f"(a) expected outcome=transferred status=200, got {res_a[-1]['_line']}")
    ended_a = p.wait_event("call_ended", call=call_a, timeout=5)
    t.expect(ended_a[-1].get("reason") == "transferred",
             f"(a) call_ended reason={ended_a[-1].get('reason')}, expected transferred")
    t.expect(p.events("transfer_refer", call=call_a), "(a) no event=transfer_refer in Parley's log")

    # (b) REFER refused -> Parley calls the target and bridges
    tgt = start_uas(t, "uas_answer_wait_bye.xml", tport, "b-target")
    cb = t.sipp_start("uac_transfer_refuse.xml", p.sip_addr, timeout=40, duration_ms=5000, name="b-caller")
    rb = cb.wait()
    rt = tgt.wait()
    t.expect(rb.rc == 0 and rb.successful == 1,
             f"(b) caller sipp rc={rb.rc} (REFER refused 405, 5 s call, its BYE must get 200)\n{rb.errors()[-1500:]}")
    t.expect(rt.rc == 0 and rt.successful == 1,
             f"(b) target sipp rc={rt.rc} (must get Parley's INVITE, then Parley's BYE within 30 s)\n"
             f"{rt.errors()[-1500:]}")
    cid_b = caller_call_id(rb)
    inc_b = [e for e in p.events("call_incoming") if e.get("sip_call_id") == cid_b]
    check(inc_b, f"(b) no event=call_incoming for Call-ID {cid_b}")
    call_b = inc_b[-1]["call"]
    caller_leg_port = int(inc_b[-1]["local_port"])
    res_b = p.wait_event("transfer_result", call=call_b, timeout=5)
    t.measure("b.transfer_result", res_b[-1]["_line"].split("event=", 1)[-1])
    t.expect(res_b[-1].get("outcome") == "bridged", f"(b) expected outcome=bridged, got {res_b[-1]['_line']}")
    started = p.events("bridge_started", call=call_b)
    t.expect(started, "(b) no event=bridge_started")
    ended_bridge = p.wait_event("bridge_ended", call=call_b, timeout=10)
    t.measure("b.bridge_ended", ended_bridge[-1]["_line"].split("event=", 1)[-1])
    leg = started[-1].get("leg") if started else None
    leg_ended = p.wait_event("call_ended", call=leg, timeout=10) if leg else []
    t.expect(leg_ended and leg_ended[-1].get("reason") == "bridge_peer_ended",
             f"(b) the target leg ended with {[e.get('reason') for e in leg_ended]}, expected bridge_peer_ended")
    leg_out = [e for e in p.events("call_outgoing") if e.get("call") == leg]
    leg_port = int(leg_out[-1]["local_port"]) if leg_out else None

    # (c) REFER refused, target busy: the call goes on
    busy = start_uas(t, "uas_busy.xml", tport, "c-target-busy")
    decline = t.dir / "uac_transfer_refuse_603.xml"  # sipp checks status codes when it loads a scenario
    decline.write_text((SCENARIOS / "uac_transfer_refuse.xml").read_text()
                       .replace("SIP/2.0 405 Method Not Allowed", "SIP/2.0 603 Decline"))
    rc_ = t.sipp(str(decline), p.sip_addr, timeout=40, duration_ms=4000, name="c-caller")
    rbusy = busy.wait()
    t.expect(rc_.rc == 0 and rc_.successful == 1,
             f"(c) caller sipp rc={rc_.rc} (REFER refused 603; the call must go on: no BYE from Parley)\n"
             f"{rc_.errors()[-1500:]}")
    t.expect(rbusy.rc == 0, f"(c) busy target sipp rc={rbusy.rc} (must get Parley's INVITE and its ACK)")
    cid_c = caller_call_id(rc_)
    inc_c = [e for e in p.events("call_incoming") if e.get("sip_call_id") == cid_c]
    check(inc_c, f"(c) no event=call_incoming for Call-ID {cid_c}")
    call_c = inc_c[-1]["call"]
    c_port = int(inc_c[-1]["local_port"])
    res_c = p.wait_event("transfer_result", call=call_c, timeout=5)
    t.measure("c.transfer_result", res_c[-1]["_line"].split("event=", 1)[-1])
    t.expect(res_c[-1].get("outcome") == "failed" and res_c[-1].get("status") == "486",
             f"(c) expected outcome=failed status=486, got {res_c[-1]['_line']}")
    ended_c = p.wait_event("call_ended", call=call_c, timeout=5)
    t.expect(ended_c[-1].get("reason") == "bye_remote",
             f"(c) call ended with reason={ended_c[-1].get('reason')}, expected bye_remote (the caller's BYE)")
    p.check_alive("after the transfers")

    pkts = cap.stop()
    # (a) the REFER named the target
    refers = [m for u, m in sip_messages(pkts, p.sip_port) if u.sport == p.sip_port and sip_first_line(m).startswith("REFER ")]
    refer_to = [sip_header(m, "Refer-To", "r") for m in refers]
    t.measure("refer_to", refer_to)
    t.expect(refers and all(r and target_uri in r for r in refer_to),
             f"REFER Refer-To headers {refer_to}, expected {target_uri}")
    notify_resp = [sip_first_line(m) for u, m in sip_messages(pkts, p.sip_port)
                   if u.sport == p.sip_port and (sip_header(m, "CSeq") or "").endswith(" NOTIFY")]
    t.measure("a.notify_responses", notify_resp)
    t.expect(notify_resp and all(x.startswith("SIP/2.0 200") for x in notify_resp),
             f"(a) Parley's responses to the NOTIFY: {notify_resp}, expected 200")

    # (b) audio both ways through the bridge
    if leg_port:
        caller_in = rtp_packets(pkts, src_ports=None, dst_ports={caller_leg_port})
        caller_in = [r for r in caller_in if r.sport != leg_port]
        to_target = rtp_packets(pkts, src_ports={leg_port})
        target_in = rtp_packets(pkts, dst_ports={leg_port})
        to_caller = rtp_packets(pkts, src_ports={caller_leg_port})
        t.measure("b.rtp_to_target", len(to_target))
        t.measure("b.speech_packets_to_target", stream_speech_packets(to_target))
        t.measure("b.speech_packets_to_caller", stream_speech_packets(to_caller))
        t.expect(stream_speech_packets(to_target) >= 50,
                 f"(b) only {stream_speech_packets(to_target)} RTP packets with sound went from Parley to the target")
        t.expect(stream_speech_packets(to_caller) >= 50,
                 f"(b) only {stream_speech_packets(to_caller)} RTP packets with sound went from Parley to the caller")
        if to_target and target_in:
            t0 = max(to_target[0].ts, target_in[0].ts) + 0.3
            t1 = min(to_target[-1].ts, target_in[-1].ts, max(r.ts for r in caller_in) if caller_in else 0) - 0.1
            if t1 - t0 > 2.0:
                lag1, c1 = best_lag(energy_series(caller_in, t0, t1), energy_series(to_target, t0, t1), 50)
                lag2, c2 = best_lag(energy_series(target_in, t0, t1), energy_series(to_caller, t0, t1), 50)
                t.measure("b.caller_to_target", {"lag_ms": lag1 * 20, "corr": round(c1, 3)})
                t.measure("b.target_to_caller", {"lag_ms": lag2 * 20, "corr": round(c2, 3)})
                t.expect(c1 >= 0.5, f"(b) what the target got does not follow the caller's audio (corr {c1:.2f})")
                t.expect(c2 >= 0.5, f"(b) what the caller got does not follow the target's audio (corr {c2:.2f})")
            else:
                t.expect(False, f"(b) the bridge carried audio for only {t1 - t0:.1f} s")
    # (c) Parley kept sending to the caller until the caller's BYE
    byes = [u.ts for u, m in sip_messages(pkts, p.sip_port)
            if u.dport == p.sip_port and sip_first_line(m).startswith("BYE ") and cid_c and cid_c in m]
    if byes:
        late = [r for r in rtp_packets(pkts, src_ports={c_port}) if byes[0] - 2.0 <= r.ts < byes[0]]
        t.measure("c.rtp_to_caller_last_2s", len(late))
        t.expect(len(late) >= 80, f"(c) Parley sent {len(late)} RTP packets to the caller in the 2 s before its "
                                  "BYE: the call did not go on after the failed transfer")
    else:
        t.expect(False, "(c) the caller's BYE is not in the capture")
    p.stop()


if __name__ == "__main__":
    Test("transfer", __doc__).run(main)
