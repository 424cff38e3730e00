"""Streaming: the first sentence of a reply is on the wire while the model is still generating the rest.

TEST DOUBLE: an OpenAI-compatible chat.completions server in this script (llm.engine = "openai"), because
the pacing of a real model's tokens cannot be controlled. It streams "Sure, I can help with that." and then
waits 2.5 s before streaming the second sentence and finishing. STT, TTS and everything else are Parley's
real embedded engines; the caller is SIPp playing an espeak-ng sentence.

Checks, from a tshark capture of the call and the double's own clock (same host): Parley's reply audio
starts after the caller's sentence and at least 1.5 s BEFORE the double even sent the second sentence; the
turn record's first_rtp_ms is earlier than the moment the second chunk left; and the second sentence is
heard too (sound continues after the second chunk was sent)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (OpenAIDouble, Test, call_flows, caller_timeline, check, flow_streams,  # noqa: E402
                        packet_levels, sound_segments, turn_events)

GAP_S = 2.5
SOUND = 300.0


SCRIPT = [
    (0, {"role": "assistant", "content": "Sure, I can help with that. "}, None),
    (GAP_S, {"content": "The second sentence arrives later, while the first is already playing."}, None),
    (0, {}, "stop"),
]


def main(t: Test):
    fake = OpenAIDouble(SCRIPT)
    t.on_cleanup(fake.close)
    ul, spans = caller_timeline(t, [3.0, "Could you help me with my booking please?", 9.0])
    p = t.conversation(llm={"engine": "openai", "base_url": fake.base_url,
                            "remote_model": "double", "model": None},
                       agent={"greeting": "Hello.", "tools": [], "silence_prompt_s": 0})
    cap = t.capture(f"udp portrange {p.rtp_lo}-{p.rtp_hi}", "rtp")
    r = t.sipp("uac_echo.xml", p.sip_addr, duration_ms=16000, timeout=40)  # -d covers the whole timeline
    check(r.rc == 0 and r.successful == 1, f"sipp rc={r.rc}\n{r.errors()[-1500:]}")
    pkts = cap.stop()
    check(len(fake.sent_at) >= 2, f"the test double streamed {len(fake.sent_at)} chunks (no request?)")
    second_chunk = fake.sent_at[1]

    flows = call_flows(p)
    check(list(flows) == ["1"], f"expected one call, got {flows}")
    out, inc = flow_streams(pkts, *flows["1"])
    segs = sound_segments(packet_levels(out), SOUND, gap=0.3)
    c_segs = sound_segments(packet_levels(inc), SOUND, gap=0.45)
    check(c_segs, "no caller speech in the capture")
    reply = [(a, b) for a, b in segs if a > c_segs[-1][1]]
    check(reply, "no reply audio after the caller's sentence")
    onset = reply[0][0]
    t.measure("reply_onset_before_second_chunk_s", round(second_chunk - onset, 2))
    t.measure("reply_sound_after_second_chunk_s", round(reply[-1][1] - second_chunk, 2))
    check(second_chunk - onset >= 1.5,
          f"the reply started {onset - second_chunk:+.2f} s after the second sentence was sent: not streamed")
    check(reply[-1][1] > second_chunk + 0.5, "the second sentence was never heard")
    turns = turn_events(p)
    check(len(turns) == 1, f"expected one turn, got {len(turns)}")
    t.measure("turn", {k: turns[0].get(k) for k in ("first_sentence_ms", "first_rtp_ms", "reply")})
    p.stop()


if __name__ == "__main__":
    Test("conversation_streaming", __doc__).run(main)
