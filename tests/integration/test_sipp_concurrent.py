"""20 concurrent echo calls from sipp (-l 20 -m 20 -r 20): all must succeed and every one must get its
own speech echoed back (Parley's outgoing RTP grouped by SSRC: 20 streams, each with sound)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, rtp_streams, stream_speech_packets  # noqa: E402

CALLS = 20
CALL_MS = 3000
SPEECH_PACKETS_MIN = 25  # >= 0.5 s of echoed sound per call (the speech is 2 s)


def main(t: Test):
    t.speech_ulaw("hello, this is one of twenty calls talking at the same time", seconds=2.0)
    p = t.parley(call={"handler": "echo", "echo_delay_ms": 200})
    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "parley_rtp")
    r = t.sipp("uac_echo.xml", p.sip_addr, calls=CALLS, limit=CALLS, rate=CALLS, duration_ms=CALL_MS,
               timeout=60)
    p.check_alive("during the calls")
    pkts = cap.stop()
    t.measure("sipp_rc", r.rc)
    t.measure("sipp_successful", r.successful)

    streams = rtp_streams(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    sound = {ssrc: stream_speech_packets(s) for ssrc, s in streams.items()}
    t.measure("parley_rtp_streams", len(streams))
    t.measure("speech_packets_per_stream", sorted(sound.values()))
    # how many calls really overlapped: the most streams active at one instant
    spans = [(s[0].ts, s[-1].ts) for s in streams.values()]
    overlap = max((sum(1 for a, b in spans if a <= t0 <= b) for t0, _ in spans), default=0)
    t.measure("max_simultaneous_streams", overlap)
    ports = {s[0].sport for s in streams.values()}
    t.measure("parley_rtp_ports_used", len(ports))

    check(r.rc == 0 and r.successful == CALLS and r.failed == 0,
          f"sipp: rc={r.rc}, successful={r.successful}/{CALLS}, failed={r.failed}\n{r.errors()[-2000:]}")
    check(len(streams) == CALLS, f"expected {CALLS} RTP streams (SSRCs) from Parley, got {len(streams)}")
    silent = [f"{k:#010x}" for k, n in sound.items() if n < SPEECH_PACKETS_MIN]
    check(not silent, f"streams without echoed sound (< {SPEECH_PACKETS_MIN} packets): {silent}")
    check(len(ports) == CALLS, f"the {CALLS} calls used {len(ports)} distinct Parley RTP ports")
    check(overlap >= CALLS * 3 // 4, f"the calls were not concurrent: at most {overlap} streams at once")
    p.stop()


if __name__ == "__main__":
    Test("sipp_concurrent", __doc__).run(main)
