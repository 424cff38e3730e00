"""bench/conversation_bench.py — voice-to-voice latency of the conversation handler, from Parley's own
per-turn timing and from the wire.

  /usr/bin/python3 bench/conversation_bench.py --parley build/bin/parley [--quick] [--keep]
      [--json build/bench/conversation.json]

A caller (SIPp, uac_echo.xml) streams one µ-law file that holds a whole conversation: a short silence for
the greeting, then TURNS utterances of 1–2 s of espeak-ng speech (varied sentences), each followed by
GAP_S of silence, long enough for Parley's reply to be played out. Parley runs the conversation handler
with the random-weight test models (stt: whisper-tiny-random, llm: llama-tiny-random with max_tokens
small and temperature 0, tts: espeak-ng), so STT and LLM compute are tiny and what is measured is the
pipeline around them: VAD end of turn, thread hand-offs, chunking, synthesis, playout and paced send.

1. One call with TURNS (≥ 20) turns.
2. CONCURRENT (8) calls placed at once (10 calls/s), each with TURNS_C (≥ 3) turns, ≥ 20 turns in all.

Per turn, two measurements:
  * internal: the `event=turn` log line — every stage in ms after `speech_end`, the end of the last 32 ms
    VAD window with speech, stamped when the media thread processed it (so after the jitter buffer);
  * external: a tshark capture on lo — the capture time of the caller's last RTP packet with energy in
    the utterance → the capture time of Parley's first RTP packet with energy after it. This is what a
    caller would measure at the network edge (minus their own jitter buffer and playout).
The difference (external − internal first_rtp_ms) is the receive jitter buffer (media.jitter_ms), the
VAD's trailing window, frame alignment, and the leading near-silence of the synthesized reply.

"Pipeline overhead" is Parley's overhead_ms: first_rtp − stt_final − (LLM start → first clause) − TTS
compute of the first audio: what the handler adds around the engines (the eot wait is a policy, not
overhead, and is reported on its own). Goal from the issue: ≤ 30 ms p50.

Not a test: prints Markdown tables and writes JSON. The machine is shared: the load average is recorded.
"""
import json
import os
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from parleytest import (REPO, Test, check, g711_decode, log, read_wav, rms, rtp_packets,  # noqa: E402
                        speech_wav, wav_to_ulaw)

QUICK = "--quick" in sys.argv
if QUICK:
    sys.argv.remove("--quick")
JSON_OUT = REPO / "build" / "bench" / "conversation.json"
if "--json" in sys.argv:
    i = sys.argv.index("--json")
    JSON_OUT = Path(sys.argv[i + 1])
    del sys.argv[i:i + 2]

TURNS = 6 if QUICK else 22           # single call
CONCURRENT, TURNS_C = 8, 3           # 8 calls x 3 turns = 24 turns
GAP_S = 9.0                          # silence after each utterance: Parley's reply (max_tokens 3) fits
GREETING_S = 1.5                     # caller silence at the start ("Hi." is 0.37 s)
MAX_TOKENS = 3
ENERGY = 300.0                       # RMS (of 32768) above which a G.711 packet carries speech
RATE = 8000

SENTENCES = [
    "I would like to book a table.",
    "Can you tell me the opening hours?",
    "My order has not arrived yet.",
    "What is the weather like today?",
    "Please call me back tomorrow.",
    "I need to change my address.",
    "How much does the ticket cost?",
    "Is the pharmacy open on Sunday?",
    "I lost my credit card.",
    "Can I speak to a manager?",
    "The heating is broken again.",
    "When does the next train leave?",
    "I want to cancel my subscription.",
    "Do you deliver to the airport?",
    "My password does not work.",
    "Thank you, that is very helpful.",
    "Could you repeat the number?",
    "I will be there at seven.",
    "Where can I park my car?",
    "Is breakfast included in the price?",
    "That sounds good to me.",
    "One more question, please.",
]

FIELDS = ["eot_ms", "stt_final_ms", "stt_compute_ms", "llm_first_token_ms", "first_sentence_ms",
          "tts_first_audio_ms", "tts_compute_ms", "first_rtp_ms", "overhead_ms"]


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return float(np.percentile(xs, q))


def fmt(x, nd=0):
    return "–" if x is None else f"{x:.{nd}f}"


def make_timeline(t: Test, sentences: list[str], name: str) -> tuple[Path, list[tuple[float, float]], float]:
    """<workdir>/speech.ul: greeting silence, then per sentence the utterance and GAP_S of silence.
    Returns the path, (start_s, end_s) of each utterance in the file, and the file's length in s."""
    parts = [np.zeros(int(GREETING_S * RATE), np.int16)]
    spans = []
    pos = GREETING_S
    for i, s in enumerate(sentences):
        w = speech_wav(t, s, t.dir / f"{name}_u{i}.wav", RATE)
        _, x = read_wav(w)
        pcm = (x * 32767).astype(np.int16)
        nz = np.nonzero(np.abs(pcm) > 200)[0]  # trim espeak's own leading/trailing silence
        pcm = pcm[nz[0]:nz[-1] + 1] if len(nz) else pcm
        dur = len(pcm) / RATE
        check(0.7 <= dur <= 2.5, f"utterance {s!r} is {dur:.2f} s, expected 1–2 s of speech")
        spans.append((pos, pos + dur))
        parts += [pcm, np.zeros(int(GAP_S * RATE), np.int16)]
        pos += dur + GAP_S
    pcm = np.concatenate(parts)
    wav = t.dir / f"{name}.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    ul = wav_to_ulaw(t, wav, t.dir / "speech.ul")  # uac_echo.xml streams speech.ul from sipp's work dir
    return ul, spans, len(pcm) / RATE


def energy_segments(pkts, min_gap_s: float = 2.0):
    """(first_ts, last_ts) of each run of energetic packets, runs split by min_gap_s of quiet."""
    segs = []
    for r in pkts:
        if r.pt not in (0, 8) or rms(g711_decode(r.payload, r.pt)) <= ENERGY:
            continue
        if segs and r.ts - segs[-1][1] < min_gap_s:
            segs[-1][1] = r.ts
        else:
            segs.append([r.ts, r.ts])
    return segs


def external(packets, port: int, n_utts: int):
    """For the call whose Parley RTP port is `port`: per utterance, the capture time of the caller's last
    energetic packet and of Parley's first energetic packet after it (before the next utterance)."""
    caller = sorted(rtp_packets(packets, dst_ports={port}), key=lambda r: r.ts)
    parley = sorted(rtp_packets(packets, src_ports={port}), key=lambda r: r.ts)
    utts = energy_segments(caller)
    out = []
    for i, (s, e) in enumerate(utts):
        nxt = utts[i + 1][0] if i + 1 < len(utts) else float("inf")
        reply = [(r.ts, rms(g711_decode(r.payload, r.pt))) for r in parley if e < r.ts < nxt and r.pt in (0, 8)]
        # Parley sends digital silence (µ-law 0xFF = 0) when it has nothing to say: the first packet that is
        # not exactly silent is the reply's first RTP packet (what first_rtp_ms stamps), the first one above
        # ENERGY is where the caller starts hearing it.
        first_any = next((ts for ts, x in reply if x > 0), None)
        onset = next((ts for ts, x in reply if x > ENERGY), None)
        out.append({"speech_end_ts": e, "reply_onset_ts": onset,
                    "external_ms": (onset - e) * 1000 if onset is not None else None,
                    "external_first_packet_ms": (first_any - e) * 1000 if first_any is not None else None})
    if len(utts) != n_utts:
        log(f"port {port}: {len(utts)} caller speech segments in the capture, expected {n_utts}")
    return out


def run_scenario(t: Test, name: str, calls: int, turns_per_call: int, models: dict) -> dict:
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(turns_per_call)]
    _, spans, length_s = make_timeline(t, sentences, name)
    p = t.parley(name=f"parley_{name}", rtp_ports=4 * calls + 20,
                 call={"handler": "conversation", "max_concurrent": calls + 4},
                 stt={"model": models["stt"], "vad_model": models["vad"]},
                 llm={"model": models["llm"], "max_tokens": MAX_TOKENS, "temperature": 0.0, "seed": 1},
                 agent={"greeting": "Hi."}, log={"level": "info"})
    cap = t.capture(f"udp and portrange {p.rtp_lo}-{p.rtp_hi}", name=f"cap_{name}")
    load0 = os.getloadavg()
    t0 = time.monotonic()
    r = t.sipp("uac_echo.xml", p.sip_addr, calls=calls, limit=calls, rate=10, duration_ms=int(length_s * 1000) + 1500,
               timeout=length_s + 60, name=f"sipp_{name}")
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    packets = cap.stop()
    check(r.rc == 0 and r.successful == calls, f"{name}: sipp rc={r.rc} successful={r.successful}\n{r.errors()[-1500:]}")
    p.wait_event("conversation_end", count=calls, timeout=20)
    turns = p.events("turn")
    barge = p.events("barge_in")
    ignored = p.events("utterance_ignored")
    ports = {int(e["call"]): int(e["local_port"]) for e in p.events("call_incoming")}
    p.stop()

    rows = []
    for call, port in sorted(ports.items()):
        ext = external(packets, port, len(spans))
        ct = [e for e in turns if int(e["call"]) == call]
        ct.sort(key=lambda e: int(e["turn"]))
        if len(ct) != len(ext):
            log(f"{name}: call {call}: {len(ct)} turns logged, {len(ext)} utterances on the wire: "
                "external times are matched in order and may be off")
        for i, e in enumerate(ct):
            row = {"call": call, "turn": int(e["turn"]), "early_end": e["early_end"] == "1",
                   "interrupted": e["interrupted"] == "1"}
            for f in FIELDS:
                v = float(e[f])
                row[f] = v if v >= 0 else None
            x = ext[i] if i < len(ext) else {}
            row["external_ms"] = x.get("external_ms")
            row["external_minus_internal_ms"] = (row["external_ms"] - row["first_rtp_ms"]
                                                 if row["external_ms"] is not None and row["first_rtp_ms"] is not None
                                                 else None)
            row["external_first_packet_ms"] = x.get("external_first_packet_ms")
            fp, fr = row["external_first_packet_ms"], row["first_rtp_ms"]
            # caller side: jitter buffer + VAD trailing window + tick alignment
            row["receive_side_ms"] = fp - fr if fp is not None and fr is not None else None
            # reply side: quiet start of the synthesized audio before it passes ENERGY
            row["reply_quiet_start_ms"] = (row["external_ms"] - fp
                                           if row["external_ms"] is not None and fp is not None else None)
            rows.append(row)
    expected = calls * turns_per_call
    res = {"name": name, "calls": calls, "turns_per_call": turns_per_call, "turns_expected": expected,
           "turns_logged": len(turns), "barge_ins": len(barge), "utterances_ignored": len(ignored),
           "wall_s": round(wall, 1), "loadavg_before": load0, "loadavg_after": load1, "turns": rows,
           "barge_in_lines": [b["_line"] for b in barge][:10]}
    log(f"{name}: {len(turns)}/{expected} turns logged, {len(barge)} barge-ins, load {load0[0]:.1f} → {load1[0]:.1f}")
    return res


def summarize(res: dict) -> dict:
    rows = res["turns"]
    def col(k):
        return [r[k] for r in rows if r.get(k) is not None]
    # Stage deltas: each stage's start from the previous one's end.
    deltas = {
        "eot wait (speech_end → end of turn)": [r["eot_ms"] for r in rows],
        "STT after eot (→ stt_final)": [r["stt_final_ms"] - r["eot_ms"] for r in rows],
        "→ LLM first token": [r["llm_first_token_ms"] - r["stt_final_ms"] for r in rows if r["llm_first_token_ms"] is not None],
        "→ first clause": [r["first_sentence_ms"] - r["llm_first_token_ms"] for r in rows
                           if r["first_sentence_ms"] is not None and r["llm_first_token_ms"] is not None],
        "→ TTS first audio": [r["tts_first_audio_ms"] - r["first_sentence_ms"] for r in rows
                              if r["tts_first_audio_ms"] is not None and r["first_sentence_ms"] is not None],
        "→ first RTP (playout tick)": [r["first_rtp_ms"] - r["tts_first_audio_ms"] for r in rows
                                       if r["first_rtp_ms"] is not None and r["tts_first_audio_ms"] is not None],
    }
    s = {"n": len(rows), "cumulative": {}, "deltas": {}}
    for f in FIELDS + ["external_first_packet_ms", "external_ms", "external_minus_internal_ms", "receive_side_ms",
                          "reply_quiet_start_ms"]:
        v = col(f)
        s["cumulative"][f] = {"p50": pct(v, 50), "p90": pct(v, 90), "min": min(v) if v else None,
                              "max": max(v) if v else None, "n": len(v)}
    for k, v in deltas.items():
        s["deltas"][k] = {"p50": pct(v, 50), "p90": pct(v, 90), "n": len(v)}
    s["early_ends"] = sum(r["early_end"] for r in rows)
    s["interrupted"] = sum(r["interrupted"] for r in rows)
    return s


def print_summary(res: dict, s: dict):
    print(f"\n### {res['name']}: {res['calls']} call(s) x {res['turns_per_call']} turns — {s['n']} turns logged "
          f"(expected {res['turns_expected']}), early ends {s['early_ends']}, interrupted {s['interrupted']}, "
          f"barge-ins {res['barge_ins']}, load average {res['loadavg_before'][0]:.1f} → {res['loadavg_after'][0]:.1f}\n")
    c = s["cumulative"]
    print("| ms after the caller's speech end | p50 | p90 | min | max |")
    print("|---|---|---|---|---|")
    names = [("eot_ms", "end of turn decided (eot_ms)"), ("stt_final_ms", "final transcript (stt_final_ms)"),
             ("stt_compute_ms", "  STT compute of it (stt_compute_ms)"),
             ("llm_first_token_ms", "LLM first token"), ("first_sentence_ms", "first clause out of the chunker"),
             ("tts_first_audio_ms", "TTS first audio"), ("tts_compute_ms", "  TTS compute of it (tts_compute_ms)"),
             ("first_rtp_ms", "**first RTP of the reply (voice-to-voice, internal)**"),
             ("overhead_ms", "**pipeline overhead (overhead_ms)**"),
             ("external_ms", "**external: caller's last speech packet → Parley's first speech packet (tshark)**"),
             ("external_minus_internal_ms", "external − internal"),
             ("external_first_packet_ms", "  external to Parley's first non-silent packet (wire twin of first_rtp_ms)"),
             ("receive_side_ms", "  of which receive side: jitter buffer + VAD trailing window + tick"),
             ("reply_quiet_start_ms", "  of which the reply's quiet start (first packet → first above energy)")]
    for k, label in names:
        v = c[k]
        print(f"| {label} | {fmt(v['p50'], 1)} | {fmt(v['p90'], 1)} | {fmt(v['min'], 1)} | {fmt(v['max'], 1)} |")
    print("\n| stage (delta from the previous one) | p50 | p90 |")
    print("|---|---|---|")
    for k, v in s["deltas"].items():
        print(f"| {k} | {fmt(v['p50'], 1)} | {fmt(v['p90'], 1)} |")


def main(t: Test):
    tm = REPO / "build" / "testmodels"
    for d in (t.parley_bin.parent.parent / "testmodels", tm):
        if (d / "whisper-tiny-random.bin").is_file():
            tm = d
            break
    models = {"stt": str(tm / "whisper-tiny-random.bin"), "llm": str(tm / "llama-tiny-random.gguf"),
              "vad": str(REPO / "third_party" / "models" / "silero-v6.2.0-ggml.bin")}
    for k, v in models.items():
        check(Path(v).is_file(), f"missing {k} model {v} (build/bin/parley-testmodels writes the test models)")

    results = [run_scenario(t, "single", 1, TURNS, models)]
    if not QUICK:
        results.append(run_scenario(t, "concurrent8", CONCURRENT, TURNS_C, models))
    out = {"machine": {"nproc": os.cpu_count()}, "config": {"max_tokens": MAX_TOKENS, "gap_s": GAP_S,
           "energy_rms": ENERGY, "jitter_ms": 60}, "runs": []}
    for res in results:
        s = summarize(res)
        print_summary(res, s)
        out["runs"].append({**res, "summary": s})
        if res["barge_in_lines"]:
            print("\nbarge-ins (first 10):\n" + "\n".join("    " + l[:300] for l in res["barge_in_lines"]))
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(out, indent=1))
    print(f"\nJSON: {JSON_OUT}")
    for res in results:
        check(len(res["turns"]) >= res["turns_expected"] * 0.8,
              f"{res['name']}: only {len(res['turns'])} of {res['turns_expected']} turns were logged")


if __name__ == "__main__":
    Test("bench_conversation", __doc__).run(main)
