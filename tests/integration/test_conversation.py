"""One conversational call (call.handler = "conversation", random-weight test models): greeting, the
caller's sentence, Parley's reply — checked in the audio on the wire and against Parley's turn log.

sipp (uac_echo.xml) streams one µ-law file built by the test: silence while the greeting plays, one spoken
sentence, then silence while Parley answers; then BYE. tshark captures both directions of the RTP.
Checks:
  * Parley's audio (decoded from the capture) starts with the greeting: sound within 300 ms of Parley's first
    RTP packet, lasting about event=greeting ms; then silence while the caller speaks; then the reply, whose
    sound starts after the caller's sentence ended (as seen in the capture of sipp's RTP);
  * exactly one event=turn (trigger=speech, not interrupted) whose stages are all >= 0 and in order:
    eot <= stt_final <= llm_first_token <= first_sentence <= tts_first_audio <= first_rtp;
  * the reply's first RTP packet in the capture agrees with first_rtp_ms, counted from the caller's speech
    end in the capture plus the jitter buffer (tolerance: VAD window, jitter, packet pacing, scheduling on
    a shared 2-core box), and the reply's first sound follows within TTS's leading silence;
  * event=conversation_end with turns=1 and llm_sequences_in_use=0.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (BABBLE_STT, Test, call_flows, check, flow_streams, packet_levels, sound_segments,  # noqa: E402
                        turn_events, caller_timeline)

GREETING_GAP_S = 4.0      # caller silent this long first (the default greeting is ~2.7 s)
SENTENCE = "Could you tell me what time the office opens tomorrow morning?"
AFTER_S = 12.0            # caller silent after the sentence while Parley answers (max_tokens 6: ~5 s)
JITTER_MS = 60            # media.jitter_ms (the default), set explicitly: the expected reply onset uses it
ONSET_TOL_MS = 250        # |reply's first RTP in capture - expected| (VAD 32 ms window, jitter buffer,
                          # 20 ms pacing, scheduling on a loaded 2-core box)
SOUND = 300.0             # packet RMS (of 32768) above which a packet carries sound


def main(t: Test):
    ul, spans = caller_timeline(t, [GREETING_GAP_S, SENTENCE, AFTER_S])
    check(len(spans) == 1, f"expected one speech span in the caller audio, got {spans}")
    p = t.conversation(max_tokens=6, stt=BABBLE_STT, media={"jitter_ms": JITTER_MS})
    cap = t.capture(f"udp portrange {p.rtp_lo}-{p.rtp_hi}", "rtp")
    # sipp's <pause/> (-d) starts with the stream: it must cover the whole file
    r = t.sipp("uac_echo.xml", p.sip_addr, duration_ms=int(ul.stat().st_size / 8) + 300, timeout=60)
    t.measure("sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"sipp: rc={r.rc} successful={r.successful}\n{r.errors()[-1500:]}")
    ended = p.wait_event("conversation_end", timeout=15)
    pkts = cap.stop()
    p.check_alive("after the call")

    flows = call_flows(p)
    check(list(flows) == ["1"], f"expected one answered call, got {flows}")
    out, inc = flow_streams(pkts, *flows["1"])
    check(out and inc, f"RTP missing in the capture: {len(out)} packets from Parley, {len(inc)} from sipp")
    t0 = out[0].ts
    lv_out = packet_levels(out)
    segs = sound_segments(lv_out, SOUND, gap=0.45)
    caller = sound_segments(packet_levels(inc), SOUND, gap=0.45)
    rel = [(round(a - t0, 3), round(b - t0, 3)) for a, b in segs]
    t.measure("parley_sound_segments_s", rel)
    t.measure("caller_sound_segments_s", [(round(a - t0, 3), round(b - t0, 3)) for a, b in caller])
    t.measure("caller_first_rtp_vs_parley_first_rtp_ms", round((inc[0].ts - t0) * 1000))

    greet = p.events("greeting")
    check(len(greet) == 1, f"expected one event=greeting, got {len(greet)}")
    greet_ms = int(greet[0]["ms"])
    t.measure("greeting_ms", greet_ms)
    check(len(caller) >= 1, "no sound in sipp's RTP (the caller's sentence)")
    c_on, c_end = caller[0][0], caller[-1][1]
    t.measure("caller_sentence_s", (round(c_on - t0, 3), round(c_end - t0, 3)))

    # greeting
    check(len(segs) >= 2, f"expected at least two sound segments from Parley (greeting, reply), got {rel}")
    g_on, g_end = segs[0]
    t.measure("greeting_onset_after_first_rtp_ms", round((g_on - t0) * 1000))
    t.measure("greeting_sound_ms", round((g_end - g_on) * 1000))
    t.expect(g_on - t0 <= 0.3, f"greeting sound starts {(g_on - t0) * 1000:.0f} ms after Parley's first RTP "
                               "packet (expected <= 300 ms)")
    t.expect(0.6 * greet_ms <= (g_end - g_on) * 1000 <= greet_ms + 200,
             f"greeting sound lasts {(g_end - g_on) * 1000:.0f} ms, event=greeting says {greet_ms} ms")
    t.expect(g_end <= c_on, f"greeting still sounding at {g_end - t0:.2f} s when the caller spoke at "
                            f"{c_on - t0:.2f} s (the caller audio should start after it)")
    # silence while the caller speaks
    loud_during = [ts for ts, v in lv_out if c_on <= ts <= c_end and v > SOUND]
    t.measure("parley_loud_packets_while_caller_speaks", len(loud_during))
    t.expect(not loud_during, f"Parley sent {len(loud_during)} packets with sound while the caller spoke")
    # reply
    reply = [s for s in segs[1:] if s[0] > c_on]
    check(reply, f"no reply sound after the caller's sentence: Parley's sound segments {rel}")
    r_on = reply[0][0]
    t.measure("reply_sound_onset_after_caller_end_ms", round((r_on - c_end) * 1000))
    t.expect(r_on > c_end, f"reply sound at {r_on - t0:.3f} s starts before the caller's sentence ended "
                           f"({c_end - t0:.3f} s)")

    # the turn record
    turns = turn_events(p)
    t.measure("turn_lines", [e["_line"].split("event=", 1)[1] for e in turns])
    check(len(turns) == 1, f"expected exactly one event=turn, got {len(turns)}")
    tr = turns[0]
    t.expect(tr.get("trigger") == "speech" and tr.get("interrupted") == 0,
             f"turn: trigger={tr.get('trigger')} interrupted={tr.get('interrupted')}, expected speech / 0")
    stages = ["eot_ms", "stt_final_ms", "llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms",
              "first_rtp_ms"]
    vals = [tr.get(k) for k in stages]
    t.measure("turn_stages_ms", dict(zip(stages, vals)))
    t.expect(all(isinstance(v, float) and v >= 0 for v in vals), f"a turn stage is missing or < 0: {vals}")
    t.expect(all(isinstance(a, float) and isinstance(b, float) and a <= b for a, b in zip(vals, vals[1:])),
             f"turn stages out of order: {dict(zip(stages, vals))}")
    t.expect(tr.get("v2v_ms") == tr.get("first_rtp_ms"), f"v2v_ms {tr.get('v2v_ms')} != first_rtp_ms")
    t.expect(tr.get("reply", "") != "", "the turn's reply= is empty")

    # the reply's onset in the capture vs first_rtp_ms. speech_end is the end of the last VAD window with
    # speech, in Parley's time: the caller's last loud packet reached Parley at c_end and left the jitter
    # buffer ~JITTER_MS later. The first packet of the reply (whatever its level) is the first packet after
    # the silence that follows the caller's speech end + eot: find it as the first packet whose RTP timestamp
    # jumps or whose level rises; simplest robust measure: the first packet after c_end + eot_ms that is not
    # digital silence.
    if isinstance(tr.get("first_rtp_ms"), float):
        expected = c_end + JITTER_MS / 1000 + tr["first_rtp_ms"] / 1000
        nonsilent = [ts for ts, v in lv_out if ts > c_end + tr["eot_ms"] / 1000 - 0.1 and v > 0.0]
        first_reply_pkt = nonsilent[0] if nonsilent else None
        t.measure("expected_reply_first_rtp_s", round(expected - t0, 3))
        if first_reply_pkt is not None:
            d_pkt = (first_reply_pkt - expected) * 1000
            t.measure("reply_first_nonsilent_packet_s", round(first_reply_pkt - t0, 3))
            t.measure("reply_first_packet_minus_expected_ms", round(d_pkt))
            t.expect(abs(d_pkt) <= ONSET_TOL_MS,
                     f"the reply's first non-silent packet is {d_pkt:.0f} ms from where first_rtp_ms="
                     f"{tr['first_rtp_ms']:.0f} puts it (tolerance {ONSET_TOL_MS} ms)")
        d_sound = (r_on - expected) * 1000
        t.measure("reply_sound_onset_minus_expected_ms", round(d_sound))
        t.expect(-ONSET_TOL_MS <= d_sound <= ONSET_TOL_MS + 300,
                 f"the reply's sound starts {d_sound:.0f} ms from where first_rtp_ms puts it")

    t.measure("conversation_end", ended[0]["_line"].split("event=", 1)[1])
    t.expect(ended[0].get("turns") == "1" and ended[0].get("llm_sequences_in_use") == "0",
             f"conversation_end: {ended[0]['_line']}")
    p.stop()


if __name__ == "__main__":
    Test("conversation", __doc__).run(main)
