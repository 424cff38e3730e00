"""The far end returns Parley's own audio (a phone with acoustic/line echo): Parley must not take its echo
for the caller.

sipp runs uac_basic.xml (sends no audio of its own) with -rtp_echo, so every RTP packet Parley sends comes
straight back to it, for a 10 s call: the greeting and (agent.silence_prompt_s = 3) the silence prompts are
echoed. tshark captures both directions; the echo must really be there (sound in sipp's RTP to Parley).

Main: agent.echo_canceller = true (the default): no event=barge_in cause=speech and no event=turn with
trigger=speech for the call (the silence prompts keep coming, as for a silent caller).
Control, same test: a second Parley with agent.echo_canceller = false; the echo must then be detected as
speech (an event=barge_in cause=speech or an event=turn trigger=speech, or at least an utterance), which
shows that the main check can fail.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, call_flows, check, flow_streams, packet_levels, sound_segments, turn_events  # noqa: E402

CALL_MS = 10000
SOUND = 300.0


def echo_call(t: Test, echo_canceller: bool, name: str) -> dict:
    p = t.conversation(name=name, max_tokens=8,
                       agent={"echo_canceller": echo_canceller, "silence_prompt_s": 3, "silence_prompts_max": 5})
    cap = t.capture(f"udp portrange {p.rtp_lo}-{p.rtp_hi}", f"rtp-{name}")
    r = t.sipp("uac_basic.xml", p.sip_addr, duration_ms=CALL_MS, timeout=40, extra=["-rtp_echo"],
               name=f"sipp-{name}")
    p.wait_event("conversation_end", timeout=15)
    pkts = cap.stop()
    p.check_alive("after the echo call")
    flows = call_flows(p)
    out, inc = flow_streams(pkts, *flows["1"]) if "1" in flows else ([], [])
    res = {
        "sipp_ok": r.rc == 0 and r.successful == 1, "sipp_err": r.errors()[-1500:],
        "parley_sound_s": [], "echo_sound_s": [],
        "greetings": len(p.events("greeting")),
        "prompts": len(p.events("silence_prompt")),
        "barge_speech": [e["_line"].split("event=", 1)[1] for e in p.events("barge_in", cause="speech")],
        "turns_speech": [e["_line"].split("event=", 1)[1] for e in turn_events(p, trigger="speech")],
        "ignored": len(p.events("utterance_ignored")),
    }
    if out:
        t0 = out[0].ts
        res["parley_sound_s"] = [(round(a - t0, 2), round(b - t0, 2))
                                 for a, b in sound_segments(packet_levels(out), SOUND)]
        if inc:
            res["echo_sound_s"] = [(round(a - t0, 2), round(b - t0, 2))
                                   for a, b in sound_segments(packet_levels(inc), SOUND)]
    for k, v in res.items():
        if k != "sipp_err":
            t.measure(f"{name}.{k}", v)
    p.stop()
    return res


def main(t: Test):
    main_r = echo_call(t, True, "aec_on")
    check(main_r["sipp_ok"], f"echo call (AEC on): sipp failed\n{main_r['sipp_err']}")
    check(main_r["parley_sound_s"], "Parley sent no sound (no greeting?)")
    check(main_r["echo_sound_s"], "no echoed sound reached Parley: sipp -rtp_echo did not echo")
    t.expect(not main_r["barge_speech"], f"with the echo canceller on, Parley's own echo interrupted it: "
                                         f"{main_r['barge_speech']}")
    t.expect(not main_r["turns_speech"], f"with the echo canceller on, Parley's own echo was taken for the "
                                         f"caller's speech: {main_r['turns_speech']}")
    t.expect(main_r["prompts"] >= 1, "no silence prompt in 10 s with silence_prompt_s = 3 (the caller was silent)")

    ctl = echo_call(t, False, "aec_off")
    check(ctl["sipp_ok"] or ctl["barge_speech"] or ctl["turns_speech"],
          f"control call (AEC off): sipp failed\n{ctl['sipp_err']}")
    check(ctl["echo_sound_s"], "control: no echoed sound reached Parley")
    t.expect(ctl["barge_speech"] or ctl["turns_speech"] or ctl["ignored"],
             "CONTROL DID NOT TRIGGER: with agent.echo_canceller = false the echo of Parley's own speech was not "
             "detected as speech either (no barge_in cause=speech, no turn trigger=speech, no ignored utterance): "
             "this test cannot tell an echo canceller from a deaf VAD")


if __name__ == "__main__":
    Test("conversation_echo", __doc__).run(main)
