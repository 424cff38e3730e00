"""Many conversational calls: 50 sequential (sipp -m 50 -l 1), then 8 concurrent (-m 8 -l 8), each a
short conversation: greeting ("Hello."), the caller's ~1 s sentence, the start of Parley's reply (the caller
hangs up ~1 s into it, to keep the test short on 2 cores; the reply is cut by the hangup).

Per call (Parley's outgoing RTP grouped by SSRC): sound within 300 ms of the stream's first packet (the
greeting) and sound again after the caller's sentence ended (the reply); and per call exactly one
event=turn (trigger=speech) in the log. After each phase Parley's threads and fds are back to the baseline
taken before the calls (no thread or socket left per call), every event=conversation_end of the sequential
phase and the last one of the concurrent phase say llm_sequences_in_use=0, and each phase's calls all
succeed in sipp. agent.end_of_turn_long_ms = 500 (default 900) to shorten each call; the test models never
end a turn early (their transcripts never read complete).
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (BABBLE_STT, Test, call_flows, flow_streams, packet_levels, sound_segments,  # noqa: E402
                        turn_events, caller_timeline)

SEQ_CALLS = 50
CONC_CALLS = 8
GREETING_GAP_S = 0.8       # "Hello." is ~0.5 s
SENTENCE = ("Is the shop open today?", 1.0)
AFTER_S = 2.0              # 0.5 s end of turn + ~0.1 s to the reply + ~1.2 s of it, then BYE
SOUND = 300.0


def check_phase(t: Test, p, name: str, pkts, calls: int, sentence_end: float, call_ids: list[str]):
    flows = call_flows(p, call_ids)
    streams = {c: flow_streams(pkts, *f)[0] for c, f in flows.items()}
    streams = {c: s for c, s in streams.items() if s}
    t.measure(f"{name}.answered_calls_with_rtp", (len(flows), len(streams)))
    t.expect(len(flows) == calls and len(streams) == calls,
             f"{name}: {len(flows)} calls answered, {len(streams)} with RTP from Parley, expected {calls}")
    no_greeting, no_reply, greet_on, reply_on = [], [], [], []
    for cid, s in streams.items():
        t0 = s[0].ts
        segs = [(a - t0, b - t0) for a, b in sound_segments(packet_levels(s), SOUND, gap=0.2)]
        if not segs or segs[0][0] > 0.3:
            no_greeting.append(f"call {cid}:{[(round(a, 2), round(b, 2)) for a, b in segs]}")
        else:
            greet_on.append(segs[0][0])
        rep = [a for a, b in segs[1:] if a > sentence_end]
        if not rep:
            no_reply.append(f"call {cid}:{[(round(a, 2), round(b, 2)) for a, b in segs]}")
        else:
            reply_on.append(rep[0] - sentence_end)
    if greet_on:
        t.measure(f"{name}.greeting_onset_ms_max", round(max(greet_on) * 1000))
    if reply_on:
        t.measure(f"{name}.reply_onset_after_sentence_ms_min_median_max",
                  (round(min(reply_on) * 1000), round(statistics.median(reply_on) * 1000),
                   round(max(reply_on) * 1000)))
    t.measure(f"{name}.streams_without_greeting", len(no_greeting))
    t.measure(f"{name}.streams_without_reply", len(no_reply))
    t.expect(not no_greeting, f"{name}: streams without a greeting: {no_greeting[:5]}")
    t.expect(not no_reply, f"{name}: streams without a reply after the sentence: {no_reply[:5]}")

    turns = [e for e in turn_events(p) if str(e.get("call")) in call_ids]
    per_call = {c: [e for e in turns if str(e.get("call")) == c] for c in call_ids}
    bad = {c: len(v) for c, v in per_call.items() if len(v) != 1}
    t.measure(f"{name}.turn_lines", len(turns))
    t.expect(not bad, f"{name}: calls without exactly one event=turn: {dict(list(bad.items())[:10])}")
    t.expect(all(e.get("trigger") == "speech" for e in turns),
             f"{name}: turn triggers {sorted({e.get('trigger') for e in turns})}")
    v2v = [e["first_rtp_ms"] for e in turns if isinstance(e.get("first_rtp_ms"), float) and e["first_rtp_ms"] >= 0]
    if v2v:
        t.measure(f"{name}.v2v_ms_min_median_max", (min(v2v), statistics.median(v2v), max(v2v)))
    ends = [e for e in p.events("conversation_end") if e.get("call") in call_ids]
    t.measure(f"{name}.conversation_end_lines", len(ends))
    t.expect(len(ends) == calls, f"{name}: {len(ends)} event=conversation_end lines, expected {calls}")
    return ends


def settle(p, before, what: str, t: Test, timeout: float = 10.0):
    """Waits (bounded) until threads and fds are back to the baseline; returns the last stats."""
    deadline = time.monotonic() + timeout
    while True:
        st = p.stats()
        if (abs(st["threads"] - before["threads"]) <= 0 and abs(st["fds"] - before["fds"]) <= 2) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.5)
    t.measure(f"{what}.stats", st)
    t.expect(st["threads"] == before["threads"],
             f"{what}: threads not back to baseline: {before['threads']} -> {st['threads']}")
    t.expect(abs(st["fds"] - before["fds"]) <= 2, f"{what}: fds not back to baseline: {before['fds']} -> {st['fds']}")
    return st


def new_calls(p, seen: set) -> list[str]:
    ids = [e["call"] for e in p.events("call_incoming") if e["call"] not in seen]
    seen.update(ids)
    return ids


def main(t: Test):
    ul, spans = caller_timeline(t, [GREETING_GAP_S, SENTENCE, AFTER_S])
    sentence_end = spans[-1][1]
    call_ms = int(ul.stat().st_size / 8) + 100
    p = t.conversation(max_tokens=8, stt=BABBLE_STT, agent={"greeting": "Hello.", "end_of_turn_long_ms": 500},
                       call={"max_concurrent": 32})
    time.sleep(1.0)
    before = p.stats()
    t.measure("baseline.stats", before)
    seen: set = set()

    # --- sequential
    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "seq")
    r = t.sipp("uac_echo.xml", p.sip_addr, calls=SEQ_CALLS, limit=1, rate=50, duration_ms=call_ms,
               timeout=SEQ_CALLS * 8 + 30, name="sipp-seq")
    t.measure("seq.sipp", (r.rc, r.successful, r.failed, round(r.elapsed, 1)))
    time.sleep(1.0)
    p.check_alive("after the sequential calls")
    pkts = cap.stop()
    ids = new_calls(p, seen)
    t.expect(r.rc == 0 and r.successful == SEQ_CALLS,
             f"sequential: sipp rc={r.rc} successful={r.successful}/{SEQ_CALLS}\n{r.errors()[-1500:]}")
    ends = check_phase(t, p, "seq", pkts, SEQ_CALLS, sentence_end, ids)
    busy = [e["_line"].split("event=", 1)[1] for e in ends if e.get("llm_sequences_in_use") != "0"]
    t.expect(not busy, f"sequential: conversation_end with LLM sequences still in use: {busy[:5]}")
    settle(p, before, "seq", t)

    # --- concurrent
    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "conc")
    r = t.sipp("uac_echo.xml", p.sip_addr, calls=CONC_CALLS, limit=CONC_CALLS, rate=CONC_CALLS * 2,
               duration_ms=call_ms, timeout=60, name="sipp-conc")
    t.measure("conc.sipp", (r.rc, r.successful, r.failed, round(r.elapsed, 1)))
    time.sleep(1.0)
    p.check_alive("after the concurrent calls")
    pkts = cap.stop()
    ids = new_calls(p, seen)
    t.expect(r.rc == 0 and r.successful == CONC_CALLS,
             f"concurrent: sipp rc={r.rc} successful={r.successful}/{CONC_CALLS}\n{r.errors()[-1500:]}")
    ends = check_phase(t, p, "conc", pkts, CONC_CALLS, sentence_end, ids)
    streams = [flow_streams(pkts, *f)[0] for f in call_flows(p, ids).values()]
    spans_c = [(s[0].ts, s[-1].ts) for s in streams if s]
    overlap = max((sum(1 for a, b in spans_c if a <= t0 <= b) for t0, _ in spans_c), default=0)
    t.measure("conc.max_simultaneous_streams", overlap)
    t.expect(overlap >= CONC_CALLS * 3 // 4, f"concurrent: at most {overlap} calls at once")
    if ends:
        t.measure("conc.last_conversation_end", ends[-1]["_line"].split("event=", 1)[1])
        t.expect(ends[-1].get("llm_sequences_in_use") == "0",
                 f"concurrent: the last conversation_end says {ends[-1]['_line']}")
    settle(p, before, "conc", t)
    p.stop()


if __name__ == "__main__":
    Test("conversation_load", __doc__).run(main)
