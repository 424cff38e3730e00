"""Calls and turns are stored (store.path, SQLite in WAL mode) as they happen, and a Parley killed with
SIGKILL in the middle of a call leaves a readable database holding every turn that had completed.

SIPp calls Parley (conversation handler, test models) and says a sentence; as soon as Parley has logged the
turn (event=turn, plus 300 ms for the store thread's commit), Parley is killed with SIGKILL while the call
is still up. The database must then pass PRAGMA integrity_check, hold the call (uid, direction, SIP
Call-ID, answered, not ended) and its turn with the same user text as the log line and every timing
column set. A second Parley on the same file (a restart) must open it and store its own call after the
first one."""
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, caller_timeline, check, log, turn_events  # noqa: E402

TIMINGS = ["eot_ms", "stt_final_ms", "llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms",
           "first_rtp_ms", "overhead_ms"]


def main(t: Test):
    db_path = t.dir / "var" / "parley.db"
    caller_timeline(t, [2.0, "I would like to check my order status please.", 9.0])
    p = t.conversation(max_tokens=4, agent={"greeting": "Hello.", "silence_prompt_s": 0},
                       store={"path": str(db_path)})
    s = t.sipp_start("uac_echo.xml", p.sip_addr, duration_ms=14000, timeout=25)
    p.wait_event("turn", 1, timeout=25)
    time.sleep(0.3)
    turn = turn_events(p)[0]
    log(f"turn logged: user={turn.get('user')!r}; killing Parley with SIGKILL mid-call")
    p.proc.kill()
    p.proc.wait(5)
    p.exit_code = p.proc.returncode
    s.wait()  # sipp times out or errors: the far end died; that is expected here

    con = sqlite3.connect(str(db_path))
    check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed after SIGKILL")
    mode = db_path.stat().st_mode & 0o777
    check(mode == 0o600, f"the database holds transcripts: expected mode 0600, got {oct(mode)}")
    calls = con.execute("SELECT id, uid, direction, sip_call_id, answered_at, ended_at FROM calls").fetchall()
    t.measure("calls", calls)
    check(len(calls) == 1, f"expected 1 stored call, got {calls}")
    cid, uid, direction, sip_call_id, answered, ended = calls[0]
    check(direction == "inbound" and sip_call_id and answered, f"call row incomplete: {calls[0]}")
    check(ended is None, "a call still up at SIGKILL cannot have an end time")
    check(uid in p.text(), f"the call's uid {uid} is not in Parley's log (one id for logs and store)")
    turns = con.execute(f"SELECT idx, trigger, user_text, {', '.join(TIMINGS)} FROM turns WHERE call_id=?",
                        (cid,)).fetchall()
    t.measure("turns", turns)
    check(len(turns) == 1, f"expected the completed turn in the database, got {turns}")
    check(turns[0][2] == turn.get("user"), f"stored user text {turns[0][2]!r} != logged {turn.get('user')!r}")
    missing = [name for name, v in zip(TIMINGS, turns[0][3:]) if v is None]
    check(not missing, f"timing columns not stored: {missing}")
    con.close()

    # Restart on the same file: it opens (WAL recovered) and adds its own call.
    p2 = t.conversation(name="parley2", max_tokens=4, agent={"greeting": "Hello.", "silence_prompt_s": 0},
                        store={"path": str(db_path)})
    r = t.sipp("uac_basic.xml", p2.sip_addr, duration_ms=1500, timeout=20)
    check(r.rc == 0 and r.successful == 1, "a call after the restart failed")
    p2.stop()
    con = sqlite3.connect(str(db_path))
    n = con.execute("SELECT count(*), count(ended_at) FROM calls").fetchone()
    t.measure("calls_after_restart_total_ended", n)
    check(n == (2, 1), f"expected 2 calls (1 ended) after the restart, got {n}")


if __name__ == "__main__":
    Test("store", __doc__).run(main)
