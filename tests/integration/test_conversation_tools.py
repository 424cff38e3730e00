"""The hang_up tool end to end with the remote LLM engine (llm.engine = "openai").

TEST DOUBLE: no model that makes tool calls can run here (the embedded test model has random weights), so
Parley's llm.base_url points at a small OpenAI-compatible server in this script (http.server). It records
each POST /v1/chat/completions and answers with a streamed chat.completions reply (server-sent events):
content "Goodbye!" then a tool_calls delta for hang_up (id, name, arguments split over two fragments, as
OpenAI streams them), finish_reason "tool_calls", [DONE]. STT and TTS are the real embedded engines.

The caller (sipp, a scenario generated from uac_echo.xml that waits for Parley's BYE like uac_wait_bye.xml)
stays silent during the greeting, says a sentence, then listens. Checks: the test double got a request with
"stream": true and "tools" offering hang_up (and the greeting in the history); Parley logs event=tool_call
name=hang_up and a turn with tools="hang_up({})" and reply="Goodbye!"; the capture shows Parley speaking
after the caller's sentence (the "Goodbye!") and then its BYE, which sipp answers (sipp exit 0); the BYE
comes after the reply's sound ended (Parley does not hang up over its own goodbye).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (SCENARIOS, OpenAIDouble, Test, call_flows, check, flow_streams, packet_levels,  # noqa: E402
                        sip_first_line, sip_messages, sound_segments, turn_events, caller_timeline, wait_bye_tail)

SENTENCE = "Thanks, that is all I needed, bye."
SOUND = 300.0

# The test double's reply: content, then a hang_up call split over two fragments as OpenAI streams them.
SCRIPT = [
    (0, {"role": "assistant", "content": "Goodbye!"}, None),
    (0, {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "hang_up", "arguments": ""}}]}, None),
    (0, {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, None),
    (0, {}, "tool_calls"),
]


def main(t: Test):
    fake = OpenAIDouble(SCRIPT)
    t.on_cleanup(fake.close)
    ul, spans = caller_timeline(t, [3.5, SENTENCE, 1.0])
    src = (SCENARIOS / "uac_echo.xml").read_text()
    sc = t.dir / "uac_talk_wait_bye.xml"
    sc.write_text(src[:src.index("<pause/>")].replace('<scenario name="uac_echo">',
                                                      '<scenario name="uac_talk_wait_bye">') + wait_bye_tail(20000))

    p = t.conversation(max_tokens=40, llm={"engine": "openai", "base_url": fake.base_url,
                                           "remote_model": "double", "model": None},
                       agent={"tools": ["hang_up"]})
    cap = t.capture(f"(udp portrange {p.rtp_lo}-{p.rtp_hi}) or udp port {p.sip_port}", "rtp")
    r = t.sipp(str(sc), p.sip_addr, timeout=40)
    t.measure("sipp", (r.rc, r.successful, r.failed))
    p.wait_event("conversation_end", timeout=15)
    pkts = cap.stop()

    t.measure("double_requests", len(fake.requests))
    check(fake.requests, "the test double (OpenAI-compatible server) received no request from Parley")
    req = fake.requests[0]["body"]
    t.measure("double_request_path", fake.requests[0]["path"])
    t.measure("double_request_keys", sorted(req.keys()))
    tools = [x.get("function", {}).get("name") for x in req.get("tools", [])]
    t.measure("double_request_tools", tools)
    t.measure("double_request_roles", [m.get("role") for m in req.get("messages", [])])
    t.expect(req.get("stream") is True, "the request did not ask for a stream")
    t.expect("hang_up" in tools, f"the request offered tools {tools}, expected hang_up")

    calls = p.events("tool_call")
    turns = turn_events(p)
    t.measure("tool_call_lines", [e["_line"].split("event=", 1)[1] for e in calls])
    t.measure("turn_lines", [e["_line"].split("event=", 1)[1] for e in turns])
    t.expect([e.get("name") for e in calls] == ["hang_up"], "no (single) event=tool_call name=hang_up")
    t.expect(len(turns) == 1 and turns[0].get("reply") == "Goodbye!" and
             turns[0].get("tools", "").startswith("hang_up"),
             "expected one turn with reply=\"Goodbye!\" and tools=\"hang_up(...)\"")

    t.expect(r.rc == 0 and r.successful == 1,
             f"sipp rc={r.rc} successful={r.successful}: no BYE from Parley after the hang_up tool?\n"
             f"{r.errors()[-1500:]}")
    flows = call_flows(p)
    check(list(flows) == ["1"], f"expected one answered call, got {flows}")
    out, inc = flow_streams(pkts, *flows["1"])
    check(out and inc, f"RTP missing in the capture: {len(out)} packets from Parley, {len(inc)} from sipp")
    t0 = out[0].ts
    segs = sound_segments(packet_levels(out), SOUND, gap=0.3)
    c_segs = sound_segments(packet_levels(inc), SOUND, gap=0.45)
    t.measure("parley_sound_segments_s", [(round(a - t0, 2), round(b - t0, 2)) for a, b in segs])
    t.measure("caller_sound_segments_s", [(round(a - t0, 2), round(b - t0, 2)) for a, b in c_segs])
    byes = [u for u, m in sip_messages(pkts, p.sip_port)
            if u.sport == p.sip_port and sip_first_line(m).startswith("BYE ")]
    check(byes, "Parley sent no BYE")
    bye_t = byes[0].ts
    t.measure("bye_s", round(bye_t - t0, 2))
    check(c_segs, "no caller speech in the capture")
    said = [(a, b) for a, b in segs if c_segs[-1][1] < a < bye_t]
    t.measure("goodbye_sound_s", [(round(a - t0, 2), round(b - t0, 2)) for a, b in said])
    t.expect(said, "Parley said nothing between the caller's sentence and its BYE")
    if said:
        t.expect(0.3 <= said[-1][1] - said[0][0] <= 2.5,
                 f"the reply's sound lasted {said[-1][1] - said[0][0]:.2f} s (\"Goodbye!\" is ~0.7 s)")
        t.expect(bye_t >= said[-1][1] - 0.05, "Parley sent BYE while still saying goodbye")
        t.measure("reply_end_to_bye_ms", round((bye_t - said[-1][1]) * 1000))
    ended = p.events("call_ended")
    t.measure("call_ended", [e["_line"].split("event=", 1)[1] for e in ended])
    t.expect(any(e.get("reason") == "agent_hang_up" for e in ended),
             f"call_ended reason {[e.get('reason') for e in ended]}, expected agent_hang_up")
    p.stop()


if __name__ == "__main__":
    Test("conversation_tools", __doc__).run(main)
