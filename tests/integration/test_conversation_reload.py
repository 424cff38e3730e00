"""Config reload without dropping calls: SIGHUP re-reads [agent] for new calls. Parley starts with a short
greeting; a call is in progress (SIPp, 8 s, silent) when the config file is rewritten with a long greeting
and Parley gets SIGHUP. The call in progress must go on to its normal end (SIPp's BYE gets 200, no BYE from
Parley), the next call must get the new greeting (event=greeting ms=, the length of the synthesized greeting it
played, grows by more than a second), and a config with an error must be refused with the running settings
kept."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, log, toml_dumps  # noqa: E402

SHORT = "Hello."
LONG = "Good afternoon, you have reached the Parley test line, and this greeting is deliberately long."


def main(t: Test):
    p = t.conversation(max_tokens=4, agent={"greeting": SHORT, "silence_prompt_s": 0})
    first = t.sipp_start("uac_basic.xml", p.sip_addr, duration_ms=8000, timeout=30)
    p.wait_event("greeting", 1, timeout=10)
    time.sleep(1.0)
    # Reload while the first call is up.
    p.cfg["agent"]["greeting"] = LONG
    p.config_path.write_text(toml_dumps(p.cfg))
    p.proc.send_signal(1)  # SIGHUP
    p.wait_event("reloaded", 1, timeout=20)
    r1 = first.wait()
    check(r1.rc == 0 and r1.successful == 1, f"the call in progress during the reload failed: rc={r1.rc}\n"
                                              f"{r1.errors()[-1500:]}")
    r2 = t.sipp("uac_basic.xml", p.sip_addr, duration_ms=9000, timeout=30)
    check(r2.rc == 0 and r2.successful == 1, f"the call after the reload failed: rc={r2.rc}")
    g = [int(e["ms"]) for e in p.events("greeting")]
    t.measure("greeting_ms_before_after", g)
    check(len(g) == 2, f"expected two greetings, got {g}")
    check(g[1] > g[0] + 1000, f"the second call did not get the new (longer) greeting: {g}")

    # A broken config is refused; the running settings stay.
    p.config_path.write_text(toml_dumps(p.cfg) + "\n[agent]\nbogus = 1\n")
    p.proc.send_signal(1)
    p.wait_event("reload_failed", 1, timeout=20)
    p.check_alive("after a bad reload")
    r3 = t.sipp("uac_basic.xml", p.sip_addr, duration_ms=2000, timeout=30)
    check(r3.rc == 0 and r3.successful == 1, "a call after a refused reload failed")
    g = [int(e["ms"]) for e in p.events("greeting")]
    check(len(g) == 3 and abs(g[2] - g[1]) < 50, f"a refused reload changed the greeting: {g}")
    log(f"greetings: {g} ms")
    p.stop()


if __name__ == "__main__":
    Test("conversation_reload", __doc__).run(main)
