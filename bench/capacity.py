"""bench/capacity.py — how many echo calls and how many calls per second Parley holds on this machine.

  /usr/bin/python3 bench/capacity.py --parley build/bin/parley [--quick]

1. Concurrent echo calls: for N in a rising sequence, SIPp places N simultaneous calls that stream speech
   (PCMU, 20 ms) in a loop for CALL_S seconds; Parley (echo handler) decodes, resamples to 16 kHz, echoes,
   resamples back, encodes and sends on its paced clock. Send jitter is Parley's own measurement of how
   late each packet left relative to its absolute schedule (p99 per call, reported at call end in
   `event=call_ended ... send_late_p99_us=`), and the worst call's p99 is what counts. The largest N with
   every call answered and worst p99 < 2 ms is the capacity. Parley's CPU is read from /proc.
   Note: SIPp runs on the same 2 cores and streams N RTP flows itself, so this is a lower bound.
2. Calls per second: SIPp places short calls (answer, 1 s, BYE, no RTP from SIPp) at R calls/s for 15 s;
   the highest R with zero failed calls is reported.
Not a test: it prints numbers (a Markdown table) for the README.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from parleytest import Test, check, log  # noqa: E402

SCENARIO = str(Path(__file__).resolve().parent / "scenarios" / "uac_echo_loop.xml")
CALL_S = 10


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks (100 Hz)


def concurrency(t: Test, levels):
    rows = []
    for n in levels:
        p = t.parley(name=f"parley_c{n}", rtp_ports=2 * n + 20,
                     call={"handler": "echo", "max_concurrent": n + 10}, log={"level": "info"})
        cpu0, t0 = cpu_seconds(p.pid), time.monotonic()
        r = t.sipp(SCENARIO, p.sip_addr, calls=n, limit=n, rate=max(n, 10), duration_ms=CALL_S * 1000,
                   timeout=CALL_S + 60, name=f"sipp_c{n}")
        wall, cpu = time.monotonic() - t0, cpu_seconds(p.pid) - cpu0
        ended = p.wait_event("call_ended", count=min(r.successful, n), timeout=20)
        p99 = sorted(int(e["send_late_p99_us"]) for e in ended)
        lost = sum(int(e["lost"]) for e in ended)
        p.stop()
        worst = p99[-1] if p99 else None
        ok = r.rc == 0 and r.successful == n and worst is not None and worst < 2000
        row = dict(calls=n, answered=r.successful, worst_p99_us=worst, median_p99_us=p99[len(p99) // 2] if p99 else None,
                   lost_packets=lost, parley_cpu_pct=round(100 * cpu / wall, 1), ok=ok)
        log(f"concurrency: {row}")
        rows.append(row)
        if not ok:
            break
    return rows


def cps(t: Test, rates):
    rows = []
    for rate in rates:
        p = t.parley(name=f"parley_r{rate}", rtp_ports=4 * rate + 40,
                     call={"handler": "echo", "max_concurrent": 4 * rate + 10})
        calls = rate * 15
        r = t.sipp("uac_basic.xml", p.sip_addr, calls=calls, limit=3 * rate, rate=rate, duration_ms=1000,
                   timeout=90, name=f"sipp_r{rate}")
        p.stop()
        ok = r.rc == 0 and r.successful == calls and r.failed == 0
        row = dict(rate=rate, calls=calls, successful=r.successful, failed=r.failed, ok=ok)
        log(f"cps: {row}")
        rows.append(row)
        if not ok:
            break
    return rows


QUICK = "--quick" in sys.argv
if QUICK:
    sys.argv.remove("--quick")  # the harness parses the rest


def main(t: Test):
    quick = QUICK
    t.speech_ulaw("this is the parley capacity benchmark, talking in a loop", seconds=3.0)
    levels = [8, 16] if quick else [8, 16, 32, 64, 128, 200, 300, 400, 500]
    rates = [10] if quick else [10, 50, 100, 200, 300, 400]
    conc = concurrency(t, levels)
    rate_rows = cps(t, rates)
    best_n = max((r["calls"] for r in conc if r["ok"]), default=0)
    best_r = max((r["rate"] for r in rate_rows if r["ok"]), default=0)
    print("\n| concurrent echo calls | answered | worst call's send-late p99 | median call's p99 | packets concealed | parley CPU |")
    print("|---|---|---|---|---|---|")
    for r in conc:
        print(f"| {r['calls']} | {r['answered']} | {r['worst_p99_us']} µs | {r['median_p99_us']} µs | "
              f"{r['lost_packets']} | {r['parley_cpu_pct']} % |")
    print("\n| calls/s (1 s calls, 15 s) | calls | successful | failed |")
    print("|---|---|---|---|")
    for r in rate_rows:
        print(f"| {r['rate']} | {r['calls']} | {r['successful']} | {r['failed']} |")
    print(f"\ncapacity: {best_n} concurrent echo calls with send jitter p99 < 2 ms; {best_r} calls/s with 0 failures")
    check(best_n > 0, "not even the first concurrency level passed")


if __name__ == "__main__":
    Test("bench_capacity", __doc__).run(main)
