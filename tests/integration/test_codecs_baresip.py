"""Codecs with a real softphone: baresip (headless, aufile microphone = a spoken WAV padded with silence,
sndfile recording what it encodes and decodes) calls Parley in echo mode three times, each time offering
exactly one codec through its account's audio_codecs parameter: PCMU, PCMA, G722 (baresip modules g711
and g722). For each call:
  * Parley logs event=call_answered with codec=<that codec> (and the static payload type 0 / 8 / 9);
  * Parley's RTP to that call (tshark on lo) carries that payload type only, 160-byte payloads every 20 ms
    (G.711: 160 samples at 8 kHz; G.722: 320 samples at 16 kHz packed in 160 bytes), RTP timestamps
    stepping 160 (G.722's RTP clock is 8000 Hz, RFC 3551) and, for G.711, sound (decoded), not silence;
  * what baresip heard (dump-*-dec.wav) is the speech it sent (dump-*-enc.wav) delayed: the normalised
    cross-correlation of the 10 ms RMS envelopes at the best lag >= 0 is >= 0.7, at a lag of about
    echo_delay_ms plus jitter buffering (echo_delay_ms - 50 .. echo_delay_ms + 500 ms);
  * G.722 only (16 kHz microphone): the echo is wideband end to end: the 4.2-7 kHz share of the energy of
    what baresip heard is at least a quarter of that of what it sent.
The correlation and lag of each codec are printed. A failing codec does not hide the result of the next."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, baresip_call, best_lag, envelope, log, read_wav, rtp_packets,  # noqa: E402
                        speech_wav, stream_speech_packets, tail)

ECHO_DELAY_MS = 200
MIN_CORR = 0.7
# codec name -> (static payload type, baresip module, baresip audio_codecs value, microphone WAV rate)
CODECS = {
    "PCMU": (0, "g711.so", "PCMU", 8000),
    "PCMA": (8, "g711.so", "PCMA", 8000),
    "G722": (9, "g722.so", "G722", 16000),
}


def band_share(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Share of the signal's energy above 100 Hz that lies between lo and hi Hz."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    total = spec[f > 100].sum()
    return float(spec[(f > lo) & (f < hi)].sum() / total) if total > 0 else 0.0


def main(t: Test):
    text = "hello, this is baresip talking to the parley echo agent. one, two, three, four."
    mics = {rate: speech_wav(t, text, t.dir / f"mic{rate}.wav", rate, pad=(0.5, 3.0)) for rate in (8000, 16000)}
    _, mic_samples = read_wav(mics[8000])
    quit_after = int(len(mic_samples) / 8000) + 5  # it hangs up when the file ends; quit soon after
    p = t.parley(call={"handler": "echo", "echo_delay_ms": ECHO_DELAY_MS},
                 media={"codecs": ["PCMU", "PCMA", "G722"]})
    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "parley_rtp")

    runs = {}
    for codec, (pt, _module, _param, rate) in CODECS.items():
        before = len(p.events("call_answered"))
        log(f"--- {codec}: baresip offers only {codec}")
        blog, rec, ports = baresip_call(t, p.sip_addr, mics[rate], quit_after, codec=codec, module=_module,
                                        rate=rate, name=f"baresip-{codec}")
        p.check_alive(f"after the baresip {codec} call")
        runs[codec] = (blog, rec, ports)
        out = blog.read_text(errors="replace")
        if not t.expect("Call established" in out, f"{codec}: baresip's call was not established:\n"
                                                   f"{tail(blog, 15)}"):
            continue
        answered = p.events("call_answered")[before:]
        t.measure(f"{codec}.parley_call_answered", [a["_line"].split("event=", 1)[-1] for a in answered])
        t.expect(len(answered) == 1 and answered[0].get("codec") == codec and answered[0].get("pt") == str(pt),
                 f"{codec}: expected one event=call_answered codec={codec} pt={pt}, got "
                 f"{[(a.get('codec'), a.get('pt')) for a in answered]}")
        # the sndfile dumps of this call
        enc, dec = sorted(rec.glob("dump-*-enc.wav")), sorted(rec.glob("dump-*-dec.wav"))
        if not t.expect(enc and dec, f"{codec}: baresip's sndfile recordings missing: "
                                     f"{[x.name for x in rec.iterdir()]}"):
            continue
        r_enc, sent = read_wav(enc[-1])
        r_dec, heard = read_wav(dec[-1])
        t.measure(f"{codec}.recording_rates_hz", [r_enc, r_dec])
        t.measure(f"{codec}.heard_seconds", round(len(heard) / r_dec, 2))
        t.measure(f"{codec}.heard_rms", round(float(np.sqrt(np.mean(heard ** 2))) * 32768, 1))
        env_s, env_h = envelope(sent, r_enc), envelope(heard, r_dec)
        lag, corr = best_lag(env_s, env_h, max_lag=150)  # up to 1.5 s
        lag_ms = lag * 10
        t.measure(f"{codec}.envelope_correlation", round(corr, 3))
        t.measure(f"{codec}.best_lag_ms", lag_ms)
        t.expect(corr >= MIN_CORR, f"{codec}: what baresip heard is not its own speech echoed: envelope "
                                   f"correlation {corr:.3f} < {MIN_CORR} (best lag {lag_ms} ms)")
        if r_enc == r_dec == 16000:
            # wideband end to end: the 4.2-7 kHz band of the speech must survive the echo (a path through
            # 8 kHz anywhere would remove it)
            hs, hh = band_share(sent, r_enc, 4200, 7000), band_share(heard, r_dec, 4200, 7000)
            t.measure(f"{codec}.band_4k2_7k_share_sent_heard", [round(hs, 5), round(hh, 5)])
            t.expect(hs > 0.001 and hh >= 0.25 * hs,
                     f"{codec}: the echo lost the 4.2-7 kHz band (share of energy sent {hs:.5f}, heard {hh:.5f}): "
                     "not wideband end to end")
        t.expect(ECHO_DELAY_MS - 50 <= lag_ms <= ECHO_DELAY_MS + 500,
                 f"{codec}: echo lag {lag_ms} ms is not about echo_delay_ms={ECHO_DELAY_MS} + jitter buffering")

    pkts = cap.stop()
    for codec, (blog, rec, (lo, hi)) in runs.items():
        pt = CODECS[codec][0]
        rtp = rtp_packets(pkts, dst_ports=range(lo, hi + 1))
        pts = sorted({r.pt for r in rtp})
        sizes = sorted({len(r.payload) for r in rtp if r.pt == pt})
        t.measure(f"{codec}.parley_rtp_packets", len(rtp))
        t.measure(f"{codec}.parley_rtp_payload_types", pts)
        t.measure(f"{codec}.parley_rtp_payload_bytes", sizes)
        if not t.expect(len(rtp) >= 100, f"{codec}: Parley sent {len(rtp)} RTP packets to baresip (expected "
                                         f">= 100 in a {quit_after} s call)"):
            continue
        t.expect(pts == [pt], f"{codec}: Parley's RTP payload types {pts}, expected only {pt}")
        t.expect(sizes == [160], f"{codec}: Parley's {codec} payloads are {sizes} bytes, expected 160 (20 ms)")
        ts_steps = sorted({(b.rtp_ts - a.rtp_ts) & 0xFFFFFFFF for a, b in zip(rtp, rtp[1:])
                           if b.seq == (a.seq + 1) & 0xFFFF and b.ssrc == a.ssrc})
        t.measure(f"{codec}.parley_rtp_timestamp_steps", ts_steps[:5])
        t.expect(ts_steps == [160], f"{codec}: RTP timestamp steps {ts_steps[:5]}, expected 160 per packet "
                                    "(RFC 3551: G.722 uses an 8000 Hz RTP clock)")
        if pt in (0, 8):
            loud = stream_speech_packets(rtp)
            t.measure(f"{codec}.parley_rtp_speech_packets", loud)
            t.expect(loud >= 50, f"{codec}: only {loud} of Parley's RTP packets carry sound (expected >= 50)")
    p.stop()


if __name__ == "__main__":
    Test("codecs_baresip", __doc__).run(main)
