"""Call limit: with call.max_concurrent=2, two calls held open, a third INVITE gets 486 Busy Here; after the
two end, a new call is answered."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check  # noqa: E402


def main(t: Test):
    p = t.parley(call={"handler": "echo", "max_concurrent": 2})
    held = t.sipp_start("uac_basic.xml", p.sip_addr, calls=2, limit=2, rate=10, duration_ms=8000, timeout=30,
                        name="held")
    p.wait_event("call_answered", count=2, timeout=10)
    r = t.sipp("uac_busy_486.xml", p.sip_addr, timeout=15, name="third")
    t.measure("third_call_sipp_rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"the third call did not get 486: rc={r.rc}\n{r.errors()[-2000:]}")
    check(held.proc.poll() is None, "the two held calls ended before the third call was tried")
    h = held.wait()
    t.measure("held_calls_successful", h.successful)
    check(h.rc == 0 and h.successful == 2, f"the two held calls failed: rc={h.rc}\n{h.errors()[-2000:]}")
    p.wait_event("call_ended", count=2, timeout=5)
    time.sleep(0.5)
    t.good_call(p, what="after the two held calls ended")
    p.stop()


if __name__ == "__main__":
    Test("sipp_limit", __doc__).run(main)
