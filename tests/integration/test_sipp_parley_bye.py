"""Playback handler ends the call: Parley plays a 2 s spoken WAV to sipp and then sends BYE itself.

Checks: sipp (uac_wait_bye.xml: no RTP from sipp) gets a BYE and answers 200 (sipp exit 0); the capture
shows the BYE came from Parley 2 s..6 s after the ACK; Parley's RTP to sipp carries sound (>= 1 s of
non-silent packets) and its decoded audio matches the WAV (envelope correlation printed, >= 0.5)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, best_lag, check, envelope, read_wav, rtp_streams, sip_first_line,  # noqa: E402
                        sip_header, sip_messages, speech_wav, stream_audio, stream_speech_packets)


def main(t: Test):
    wav = speech_wav(t, "this is parley, playing a short recorded message", t.dir / "prompt.wav", 8000,
                     seconds=2.0)
    rate, ref = read_wav(wav)
    t.measure("wav_seconds", round(len(ref) / rate, 2))
    p = t.parley(call={"handler": "playback", "playback_file": str(wav)})
    cap = t.capture(f"udp port {p.sip_port} or udp src portrange {p.rtp_lo}-{p.rtp_hi}", "call")
    r = t.sipp("uac_wait_bye.xml", p.sip_addr, timeout=30)
    p.check_alive("after the call")
    pkts = cap.stop()
    t.measure("sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"sipp did not get Parley's BYE: rc={r.rc}\n{r.errors()[-2000:]}")

    msgs = sip_messages(pkts, p.sip_port)
    ack = [u.ts for u, m in msgs if u.dport == p.sip_port and sip_first_line(m).startswith("ACK ")]
    bye = [u.ts for u, m in msgs if u.sport == p.sip_port and sip_first_line(m).startswith("BYE ")]
    ok = [u.ts for u, m in msgs if u.dport == p.sip_port and sip_first_line(m).startswith("SIP/2.0 200")
          and (sip_header(m, "CSeq") or "").endswith("BYE")]
    check(ack and bye, f"capture: ACK seen {len(ack)}, BYE from Parley seen {len(bye)}")
    dt = bye[0] - ack[0]
    t.measure("bye_after_ack_s", round(dt, 2))
    check(ok, "no 200 OK to Parley's BYE in the capture")
    check(1.8 <= dt <= 6.0, f"Parley's BYE came {dt:.2f} s after the ACK (a 2 s prompt: expected 2..6 s)")

    streams = rtp_streams(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    check(len(streams) >= 1, "no RTP from Parley in the capture")
    main_stream = max(streams.values(), key=len)
    n_sound = stream_speech_packets(main_stream)
    t.measure("rtp_packets", len(main_stream))
    t.measure("rtp_packets_with_sound", n_sound)
    check(n_sound >= 50, f"only {n_sound} RTP packets from Parley carry sound (a 2 s prompt: expected >= 50)")

    got = stream_audio(main_stream).astype(np.float64) / 32768.0
    env_ref, env_got = envelope(ref, rate), envelope(got, 8000)
    lag, corr = best_lag(env_ref, env_got, max_lag=min(300, max(0, len(env_got) - 10)))
    t.measure("envelope_correlation", round(corr, 3))
    t.measure("envelope_lag_ms", lag * 10)
    check(corr >= 0.5, f"the audio Parley played does not match the WAV (envelope correlation {corr:.2f})")
    p.stop()


if __name__ == "__main__":
    Test("sipp_parley_bye", __doc__).run(main)
