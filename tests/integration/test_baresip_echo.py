"""A real softphone: baresip (headless; aufile microphone = a spoken 8 kHz WAV padded with silence; sndfile
records what it encodes and what it decodes) calls Parley in echo mode. The decoded audio baresip heard
(dump-*-dec.wav) must be the speech it sent (dump-*-enc.wav) delayed: the normalised cross-correlation of
the 10 ms RMS envelopes at the best lag >= 0 must be >= 0.7, and that lag must be about echo_delay_ms plus
jitter buffering (accepted echo_delay_ms - 50 .. echo_delay_ms + 500 ms). Both are printed."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, baresip_call, best_lag, check, envelope, read_wav,  # noqa: E402
                        speech_wav, tail)

ECHO_DELAY_MS = 200
MIN_CORR = 0.7


def main(t: Test):
    mic = speech_wav(t, "hello, this is baresip talking to the parley echo agent. one, two, three, four.",
                     t.dir / "mic.wav", 8000, pad=(0.5, 3.0))
    _, mic_samples = read_wav(mic)
    quit_after = int(len(mic_samples) / 8000) + 5  # it hangs up when the file ends; quit soon after
    p = t.parley(call={"handler": "echo", "echo_delay_ms": ECHO_DELAY_MS})

    blog, rec, _ = baresip_call(t, p.sip_addr, mic, quit_after)
    out = blog.read_text(errors="replace")
    check("Call established" in out, f"baresip's call was not established:\n{tail(blog, 15)}")
    p.check_alive("after the baresip call")
    ended = p.events("call_ended")
    t.measure("parley_call_ended", [e.get("reason") for e in ended])

    enc = sorted(rec.glob("dump-*-enc.wav"))
    dec = sorted(rec.glob("dump-*-dec.wav"))
    check(enc and dec, f"baresip's sndfile recordings missing: {[x.name for x in rec.iterdir()]}")
    r_enc, sent = read_wav(enc[-1])
    r_dec, heard = read_wav(dec[-1])
    t.measure("sent_seconds", round(len(sent) / r_enc, 2))
    t.measure("heard_seconds", round(len(heard) / r_dec, 2))
    t.measure("heard_rms", round(float(np.sqrt(np.mean(heard ** 2))) * 32768, 1))
    env_s, env_h = envelope(sent, r_enc), envelope(heard, r_dec)
    lag, corr = best_lag(env_s, env_h, max_lag=150)  # up to 1.5 s
    lag_ms = lag * 10
    t.measure("envelope_correlation", round(corr, 3))
    t.measure("best_lag_ms", lag_ms)

    # waveform correlation near that lag, at sample resolution (informative: the echo is re-encoded)
    if r_enc == r_dec and len(heard) > len(sent) // 2:
        best_w = (0, -1.0)
        for lag_s in range(max(0, lag * r_enc // 100 - r_enc // 50), lag * r_enc // 100 + r_enc // 50):
            n = min(len(sent), len(heard) - lag_s)
            if n <= 0:
                break
            a, c = sent[:n], heard[lag_s:lag_s + n]
            den = np.sqrt(np.dot(a, a) * np.dot(c, c))
            w = float(np.dot(a, c) / den) if den > 0 else 0.0
            if w > best_w[1]:
                best_w = (lag_s, w)
        t.measure("waveform_correlation", round(best_w[1], 3))
        t.measure("waveform_lag_ms", round(best_w[0] * 1000 / r_enc, 1))

    check(corr >= MIN_CORR, f"what baresip heard is not its own speech echoed: envelope correlation {corr:.3f} "
                            f"< {MIN_CORR} (best lag {lag_ms} ms)")
    check(ECHO_DELAY_MS - 50 <= lag_ms <= ECHO_DELAY_MS + 500,
          f"echo lag {lag_ms} ms is not about echo_delay_ms={ECHO_DELAY_MS} + jitter buffering")
    p.stop()


if __name__ == "__main__":
    Test("baresip_echo", __doc__).run(main)
