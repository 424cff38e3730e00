"""The dashboard, in a real browser, against a real call: Debian's chromium (headless) driven by playwright-core
(tests/browser/dashboard.mjs) while SIPp talks to Parley.

Parley runs the conversation handler on the test models with the store, recordings (without_line) and the
HTTP server on a free loopback port with a fixed token. The browser script loads the dashboard, is refused
with a wrong token and accepted with the right one, waits on the Live view (connected to /api/events) and
says READY; only then SIPp calls and says two sentences. The script must see the call appear live with a
running duration counter, its transcript grow from a `turn` event while the call is still up (the test
models babble, so only non-empty growth is checked), the call move to "recently ended" on hangup, find it in
History (search and direction filter), open its page with the transcript, the per-turn latency bars and an
<audio> player whose recording actually plays (currentTime > 0), draw the latency chart, show the server's
400 message inline for an out-of-range setting and save a greeting. Screenshots of every view go to
<workdir>/screenshots; with PARLEY_UPDATE_SCREENSHOTS=1 they are also copied to docs/img/dashboard-*.png.

Needs node (>= 20), /usr/bin/chromium and third_party/node/node_modules/playwright-core (scripts/setup)."""
import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import REPO, Test, TestFailure, caller_timeline, check, free_port, log, wait_http  # noqa: E402

SCRIPT = REPO / "tests" / "browser" / "dashboard.mjs"
PLAYWRIGHT = REPO / "third_party" / "node" / "node_modules" / "playwright-core" / "index.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
GREETING = "Hello from the dashboard test."
BROWSER_TIMEOUT = 150  # s, the whole browser session (the call itself is about 20 s)
# The screenshots the README shows: docs/img/dashboard-<name>.png
PUBLISHED = ["live", "history", "call", "latency", "settings"]


def kill_browsers(tmp: Path):
    """SIGKILL every process whose command line names `tmp` (chromium and its helpers started for this test:
    playwright starts chromium in its own process group, which the harness's group kill does not reach)."""
    me = str(tmp).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if me in f.read():
                    os.kill(int(pid), 9)
        except (OSError, ProcessLookupError):
            pass


def main(t: Test):
    node = shutil.which("node")
    check(node is not None, "node not found (Debian: apt-get install nodejs; scripts/setup)")
    check(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} not found (apt-get install chromium; scripts/setup)")
    check(PLAYWRIGHT.is_file(), f"{PLAYWRIGHT} missing: run scripts/setup (it installs playwright-core)")

    token = secrets.token_hex(16)  # 32 characters
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var = t.dir / "var"
    rec_dir = var / "recordings"
    overrides = var / "api-config.json"
    caller_timeline(t, [1.5, "I would like to check my order status please.", 2.5,
                        "And what time do you open tomorrow?", 8.0])
    p = t.conversation(max_tokens=4, agent={"greeting": "Hello.", "silence_prompt_s": 0},
                       store={"path": str(var / "parley.db")},
                       recording={"without_line": True, "dir": str(rec_dir)},
                       http={"listen": f"127.0.0.1:{port}", "token": token,
                             "token_file": str(var / "http-token"), "overrides_file": str(overrides)})

    wait_http(base)
    with urllib.request.urlopen(f"{base}/", timeout=5) as r:
        check(r.status == 200 and b"app.js" in r.read(), "GET / does not serve the dashboard (web/index.html)")

    shots = t.dir / "screenshots"
    blog = t.dir / "browser.log"
    # TMPDIR: chromium's profile (playwright makes it under os.tmpdir()) lands in the work dir, so that the
    # cleanup can find a browser left behind by a killed node by its command line, and kill it by pid.
    tmp = t.dir / "browser-tmp"
    tmp.mkdir()
    env = dict(os.environ, CHROMIUM=CHROMIUM, PLAYWRIGHT_CORE=str(PLAYWRIGHT), PARLEY_DASH_GREETING=GREETING,
               TMPDIR=str(tmp))
    t.on_cleanup(lambda: kill_browsers(tmp))
    cmd = [node, SCRIPT, base, token, shots]
    log(f"browser: {' '.join(map(str, cmd))}")
    b = t.spawn(cmd, name="browser", log_path=blog, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    lines: queue.Queue = queue.Queue()

    def pump():
        with open(blog, "w") as f:
            for raw in b.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                f.write(line + "\n")
                f.flush()
                print(f"  [browser] {line}", flush=True)
                lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + BROWSER_TIMEOUT
    seen: dict[str, str] = {}

    def wait_for(prefix: str) -> str:
        """The next browser line starting with prefix; a FAIL line, an exit or the deadline fails the test."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"the browser script did not get to '{prefix}' within {BROWSER_TIMEOUT} s "
                                  f"(last step: {seen.get('STEP', '?')})")
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                b.wait(5)
                raise TestFailure(f"the browser script exited ({b.returncode}) before '{prefix}' "
                                  f"(last step: {seen.get('STEP', '?')})")
            key, _, rest = line.partition(" ")
            seen[key] = rest
            if key == "FAIL":
                raise TestFailure(f"dashboard: {rest}  (screenshots in {shots})")
            if line.startswith(prefix):
                return rest

    wait_for("READY")
    s = t.sipp_start("uac_echo.xml", p.sip_addr, duration_ms=16000, timeout=45)
    call_id = wait_for("CALL ").strip()
    check(f"uid={call_id}" in p.text(), f"the live call {call_id} shown is not the call in Parley's log")
    wait_for("ENDED")
    r = s.wait()
    check(r.rc == 0 and r.successful == 1, f"the SIPp call failed: rc={r.rc}\n{r.errors()[-1500:]}")
    wait_for("PASS")
    b.wait(15)
    check(b.returncode == 0, f"the browser script exited with {b.returncode} after PASS")
    for k in ("LIVE_TURNS", "CALL_PAGE", "RECORDING", "LATENCY_POINTS", "SETTINGS_ERROR"):
        t.measure(k.lower(), seen.get(k))

    wavs = list(rec_dir.glob("*.wav")) if rec_dir.is_dir() else []
    check(any(call_id in w.name for w in wavs), f"no recording for {call_id} in {rec_dir}: {wavs}")
    check(overrides.is_file() and GREETING in overrides.read_text(),
          f"the greeting saved in Settings is not in the overrides file {overrides}")
    p.stop()

    pngs = sorted(x.name for x in shots.glob("*.png"))
    t.measure("screenshots", pngs)
    missing = [n for n in PUBLISHED if f"{n}.png" not in pngs]
    check(not missing, f"screenshots missing: {missing}")
    if os.environ.get("PARLEY_UPDATE_SCREENSHOTS") == "1":
        img = REPO / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        for n in PUBLISHED:
            shutil.copyfile(shots / f"{n}.png", img / f"dashboard-{n}.png")
        log(f"copied {len(PUBLISHED)} screenshots to {img}")


if __name__ == "__main__":
    Test("dashboard", __doc__).run(main)
