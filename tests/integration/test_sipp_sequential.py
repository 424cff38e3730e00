"""120 sequential echo calls from sipp; every call must get its own speech echoed back, and Parley's fds,
threads and RSS must come back to their baseline afterwards (no leak per call).

sipp (uac_echo.xml, -m 120 -l 1) streams ~1 s of espeak-ng speech as PCMU in each call; tshark captures
Parley's outgoing RTP; grouped by SSRC there must be 120 streams and each must carry sound (the echo),
not only silence.
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, log, rtp_streams, stream_speech_packets  # noqa: E402

CALLS = 120  # 200 until the operations tests joined make test; 120 keeps the suite under 30 min
CALL_MS = 1400          # per call: 1.0 s of speech + 0.2 s echo delay + jitter buffer, then BYE
SPEECH_PACKETS_MIN = 10  # >= 200 ms of echoed sound per call (the speech is ~1 s, 50 packets)


def main(t: Test):
    t.speech_ulaw("hello, one two three four five", seconds=1.0)
    p = t.parley(call={"handler": "echo", "echo_delay_ms": 200})
    time.sleep(1.0)
    before = p.stats()
    t.measure("before", before)

    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "parley_rtp")
    r = t.sipp("uac_echo.xml", p.sip_addr, calls=CALLS, limit=1, rate=50, duration_ms=CALL_MS,
               timeout=CALLS * 3 + 30)
    t.measure("sipp_rc", r.rc)
    t.measure("sipp_successful", r.successful)
    t.measure("sipp_failed", r.failed)
    t.measure("sipp_seconds", round(r.elapsed, 1))

    time.sleep(2.0)  # let Parley release the last call
    p.check_alive("during the calls")
    after = p.stats()
    t.measure("after", after)
    pkts = cap.stop()

    streams = rtp_streams(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    sound = {ssrc: stream_speech_packets(s) for ssrc, s in streams.items()}
    silent = [f"{ssrc:#010x}({len(streams[ssrc])} pkts)" for ssrc, n in sound.items() if n < SPEECH_PACKETS_MIN]
    t.measure("parley_rtp_streams", len(streams))
    if sound:
        t.measure("speech_packets_per_stream_min_median_max",
                  (min(sound.values()), statistics.median(sound.values()), max(sound.values())))
    t.measure("streams_without_echo", len(silent))

    check(r.rc == 0 and r.successful == CALLS and r.failed == 0,
          f"sipp: rc={r.rc}, successful={r.successful}/{CALLS}, failed={r.failed}\n{r.errors()[-2000:]}")
    check(len(streams) == CALLS, f"expected {CALLS} RTP streams (SSRCs) from Parley, got {len(streams)}")
    check(not silent, f"{len(silent)} of Parley's streams carry no echoed sound (< {SPEECH_PACKETS_MIN} "
                      f"packets above silence): {', '.join(silent[:10])}")

    d_fds = after["fds"] - before["fds"]
    d_thr = after["threads"] - before["threads"]
    d_rss = (after["rss_kib"] - before["rss_kib"]) / 1024
    log(f"after {CALLS} calls: fds {before['fds']} -> {after['fds']} ({d_fds:+d}), threads {before['threads']} -> "
        f"{after['threads']} ({d_thr:+d}), RSS {before['rss_kib'] / 1024:.1f} -> {after['rss_kib'] / 1024:.1f} MiB "
        f"({d_rss:+.1f})")
    check(abs(d_fds) <= 2, f"fd count not back to baseline: {before['fds']} -> {after['fds']}")
    check(abs(d_thr) <= 2, f"thread count not back to baseline: {before['threads']} -> {after['threads']}")
    check(d_rss <= 10.0, f"RSS grew by {d_rss:.1f} MiB over {CALLS} calls (allowed 10)")
    p.stop()


if __name__ == "__main__":
    Test("sipp_sequential", __doc__).run(main)
