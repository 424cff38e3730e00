"""/metrics: Prometheus text format that promtool accepts, counters that match what happened, and a real
Prometheus server that scrapes it.

Parley runs the conversation handler on the test models with the store and the HTTP server on a free
loopback port (call.answer_delay_ms = 1500 so that a call can be cancelled while ringing). SIPp makes 3
calls: 2 answered ones in which it speaks and then hangs up (BYE), and 1 it cancels while Parley rings
(uac_cancel.xml). Then GET /metrics must pass `promtool check metrics` (exit 0, nothing printed) and hold:
parley_calls_total{direction="inbound",outcome="completed"} == 2 and {outcome="missed"} == 1,
parley_calls_active == 0, sum(parley_turns_total) >= the turns in the store, parley_voice_to_voice_seconds_count
== the stored turns with a first RTP time, parley_rtp_packets_received_total > 0, histogram buckets
cumulative with +Inf == _count. Finally /usr/bin/prometheus (its config, data and port all under the work dir)
scrapes Parley every second: /api/v1/targets must report the target "up" and the query parley_calls_total
must return the same values; it is then stopped (SIGTERM, bounded).

Needs promtool and prometheus (Debian package `prometheus`, installed by scripts/setup)."""
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, caller_timeline, check, free_port, log, wait_until, wait_http  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
TOKEN = "metrics-test-token-0123456789abcdef"

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple, float]:
    """{(name, ((label, value), ...sorted)): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        check(m, f"/metrics: unparsable sample line {line!r}")
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def samples(ms: dict, name: str, **labels) -> list[tuple[dict, float]]:
    res = []
    for (n, lab), v in ms.items():
        d = dict(lab)
        if n == name and all(d.get(k) == v2 for k, v2 in labels.items()):
            res.append((d, v))
    return res


def value(ms: dict, name: str, default=None, **labels) -> float | None:
    s = samples(ms, name, **labels)
    check(len(s) <= 1, f"{name}{labels}: {len(s)} samples")
    return s[0][1] if s else default


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main(t: Test):
    for tool in (PROMTOOL, PROMETHEUS):
        check(os.access(tool, os.X_OK), f"{tool} not found: install the Debian package `prometheus` "
              "(scripts/setup installs it)")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var = t.dir / "var"
    db_path = var / "parley.db"
    caller_timeline(t, [2.0, "I would like to check my order status please.", 5.0])
    p = t.conversation(max_tokens=4, agent={"greeting": "Hello.", "silence_prompt_s": 0},
                       call={"answer_delay_ms": 1500},
                       store={"path": str(db_path)},
                       http={"listen": f"127.0.0.1:{port}", "token": TOKEN, "token_file": str(var / "http-token"),
                             "overrides_file": str(var / "api-config.json")})
    wait_http(base)

    # served before any call
    st, body = get(f"{base}/metrics")
    check(st == 200, f"GET /metrics before the calls: {st}")

    # 2 answered calls that speak and end with SIPp's BYE, concurrently; then 1 cancelled while ringing
    s = t.sipp_start("uac_echo.xml", p.sip_addr, calls=2, limit=2, rate=10, duration_ms=10000, timeout=30)
    r = s.wait()
    check(r.rc == 0 and r.successful == 2, f"2 speaking calls: rc={r.rc} successful={r.successful}\n"
          f"{r.errors()[-1500:]}")
    r = t.sipp("uac_cancel.xml", p.sip_addr, timeout=15)
    check(r.rc == 0 and r.successful == 1, f"CANCEL scenario failed: rc={r.rc}\n{r.errors()[-1500:]}")
    p.wait_event("call_ended", 3, timeout=10)
    time.sleep(0.5)  # the store thread's commit

    st, body = get(f"{base}/metrics")
    check(st == 200, f"GET /metrics: {st}")
    text = body.decode()
    (t.dir / "metrics.txt").write_text(text)
    pt = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    lint = (pt.stdout + pt.stderr).decode(errors="replace").strip()
    t.measure("promtool_rc", pt.returncode)
    t.measure("promtool_output", lint)
    t.expect(pt.returncode == 0 and not lint, f"promtool check metrics: rc {pt.returncode}: {lint}")

    ms = parse_metrics(text)
    completed = value(ms, "parley_calls_total", 0, direction="inbound", outcome="completed")
    missed = value(ms, "parley_calls_total", 0, direction="inbound", outcome="missed")
    all_calls = samples(ms, "parley_calls_total")
    t.measure("parley_calls_total", {f"{d['direction']}/{d['outcome']}": v for d, v in all_calls})
    t.expect(completed == 2, f"parley_calls_total{{inbound,completed}} = {completed}, expected 2")
    t.expect(missed == 1, f"parley_calls_total{{inbound,missed}} = {missed}, expected 1 (the cancelled call)")
    t.expect(sum(v for _, v in all_calls) == 3, f"sum(parley_calls_total) = {sum(v for _, v in all_calls)}, expected 3")
    active = value(ms, "parley_calls_active")
    t.expect(active == 0, f"parley_calls_active = {active} after every call ended")

    con = sqlite3.connect(str(db_path))
    n_turns = con.execute("SELECT count(*) FROM turns").fetchone()[0]
    n_rtp = con.execute("SELECT count(*) FROM turns WHERE first_rtp_ms IS NOT NULL AND first_rtp_ms >= 0").fetchone()[0]
    con.close()
    log_turns = len(p.events("turn"))
    turns = samples(ms, "parley_turns_total")
    turns_sum = sum(v for _, v in turns)
    v2v_count = value(ms, "parley_voice_to_voice_seconds_count", 0)
    t.measure("turns", {"metrics": {d.get("trigger"): v for d, v in turns}, "store": n_turns, "log": log_turns,
                        "store_with_first_rtp": n_rtp, "v2v_count": v2v_count})
    t.expect(n_turns >= 2, f"only {n_turns} turns stored for 2 speaking calls")
    t.expect(turns_sum >= max(n_turns, log_turns) and turns_sum > 0,
             f"sum(parley_turns_total) = {turns_sum} < turns in the store ({n_turns}) / log ({log_turns})")
    t.expect(v2v_count == n_rtp, f"parley_voice_to_voice_seconds_count = {v2v_count}, stored turns with first_rtp: "
             f"{n_rtp}")
    # histogram consistency: cumulative buckets, +Inf == _count, _sum plausible
    buckets = sorted(((float(d["le"]), v) for d, v in samples(ms, "parley_voice_to_voice_seconds_bucket")),
                     key=lambda x: x[0])
    t.expect(buckets and buckets[-1][0] == math.inf and buckets[-1][1] == v2v_count,
             f"parley_voice_to_voice_seconds buckets {buckets}: +Inf != _count {v2v_count}")
    t.expect(all(b[1] <= c[1] for b, c in zip(buckets, buckets[1:])), f"buckets not cumulative: {buckets}")
    v2v_sum = value(ms, "parley_voice_to_voice_seconds_sum", 0)
    t.expect(v2v_count == 0 or 0 < v2v_sum / v2v_count < 20, f"voice-to-voice mean {v2v_sum}/{v2v_count} s")
    rx = value(ms, "parley_rtp_packets_received_total", 0)
    t.measure("rtp_packets_received", rx)
    t.expect(rx > 2 * 10 * 50 * 0.5, f"parley_rtp_packets_received_total = {rx} after two 10 s calls")
    t.expect(value(ms, "parley_http_requests_total", 0, code="200") >= 1, "parley_http_requests_total{code=200}")

    # --- a real Prometheus scrapes it ---
    prom_port = free_port()
    prom_dir = t.dir / "prometheus"
    (prom_dir / "data").mkdir(parents=True)
    cfg = prom_dir / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: parley
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
    chk = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True, timeout=30)
    check(chk.returncode == 0, f"promtool check config: {chk.stdout.decode()}{chk.stderr.decode()}")
    prom_log = prom_dir / "prometheus.log"
    prom_base = f"http://127.0.0.1:{prom_port}"
    with open(prom_log, "wb") as lf:
        prom = t.spawn([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={prom_dir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h",
                        "--log.level=warn"],
                       name="prometheus", log_path=prom_log, stdout=lf, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, cwd=prom_dir)
    try:
        def target_up():
            check(prom.poll() is None, f"prometheus exited with {prom.returncode}")
            try:
                st, b = get(f"{prom_base}/api/v1/targets", 2)
            except OSError:
                return None
            if st != 200:
                return None
            tg = json.loads(b)["data"]["activeTargets"]
            return tg if tg and tg[0].get("health") == "up" else None
        tg = wait_until(target_up, 30, interval=0.5, what="Prometheus to report the Parley target up")
        t.measure("prometheus_target", {k: tg[0].get(k) for k in ("scrapeUrl", "health", "lastError")})

        want = {(d["direction"], d["outcome"]): v for d, v in all_calls}

        def query_matches():
            st, b = get(f"{prom_base}/api/v1/query?query=" + urllib.parse.quote("parley_calls_total"), 3)
            if st != 200:
                return None
            res = json.loads(b)["data"]["result"]
            got = {(x["metric"].get("direction"), x["metric"].get("outcome")): float(x["value"][1]) for x in res}
            return got if got == want else None
        got = wait_until(query_matches, 15, interval=0.5, what=f"Prometheus' parley_calls_total to equal {want}")
        t.measure("prometheus_parley_calls_total", {f"{k[0]}/{k[1]}": v for k, v in got.items()})
        st, b = get(f"{prom_base}/api/v1/query?query=" + urllib.parse.quote("parley_calls_active"), 3)
        res = json.loads(b)["data"]["result"] if st == 200 else []
        t.expect(len(res) == 1 and float(res[0]["value"][1]) == 0, f"Prometheus parley_calls_active: {res}")
    finally:
        t0 = time.monotonic()
        t.kill(prom, grace=10)
        log(f"prometheus stopped ({prom.returncode}) in {time.monotonic() - t0:.1f} s")
    p.stop()


if __name__ == "__main__":
    Test("metrics", __doc__).run(main)
