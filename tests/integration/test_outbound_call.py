"""Outgoing calls with `parley dial URI` against sipp acting as the callee:
  1. uas_answer_bye.xml answers (PCMU SDP) and sends BYE after 3 s: parley exits 0, sipp exits 0, and
     Parley sent RTP to the port of sipp's SDP answer during the call;
  2. uas_busy.xml answers 486 Busy Here: parley exits non-zero, sipp gets its ACK (exit 0);
  3. uas_auth.xml challenges with 401 (digest): parley answers with the credentials of its [[line]]
     (1001 / secret, `--line office`; the line registers at a stub registrar), sipp verifies them
     (verifyauth), answers and later hangs up: parley exits 0, sipp exits 0."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import StubRegistrar, Test, _udp_free, check, free_port, rtp_packets, wait_until  # noqa: E402


def start_uas(t: Test, scenario: str, duration_ms: int = 3000):
    port = free_port()
    s = t.sipp_start(scenario, None, local_port=port, duration_ms=duration_ms, timeout=40, name=Path(scenario).stem)
    wait_until(lambda: not _udp_free(port) or s.proc.poll() is not None, 10, what="sipp to listen")
    check(s.proc.poll() is None, f"sipp {scenario} exited at once: {s.files['out'].read_text(errors='replace')[-800:]}")
    return s, f"sip:test@127.0.0.1:{port}"


def main(t: Test):
    # 1. answered, then the callee hangs up
    uas, uri = start_uas(t, "uas_answer_bye.xml", 3000)
    cap = t.capture(f"udp port {uas.media_port}", "answer_bye")
    c = t.parley_call(uri, "call_answer", timeout=30)
    r = uas.wait()
    pkts = cap.stop()
    rtp = rtp_packets(pkts, dst_ports={uas.media_port})
    t.measure("answer_bye.parley_rc", c.rc)
    t.measure("answer_bye.parley_stdout", c.stdout.strip())
    t.measure("answer_bye.sipp_rc", r.rc)
    t.measure("answer_bye.rtp_to_callee", len(rtp))
    check(r.rc == 0, f"sipp (callee that hangs up) failed: rc={r.rc}\n{r.errors()[-1500:]}")
    check(c.rc == 0, f"parley dial to an answering callee exited {c.rc} (expected 0)")
    check(len(rtp) >= 100, f"Parley sent only {len(rtp)} RTP packets to the callee in a 3 s call")

    # 2. busy
    uas, uri = start_uas(t, "uas_busy.xml")
    c = t.parley_call(uri, "call_busy", timeout=20)
    r = uas.wait()
    t.measure("busy.parley_rc", c.rc)
    t.measure("busy.parley_stdout", c.stdout.strip())
    t.measure("busy.sipp_rc", r.rc)
    check(r.rc == 0, f"sipp (busy callee) did not get its ACK: rc={r.rc}\n{r.errors()[-1500:]}")
    check(c.rc != 0, "parley dial exited 0 although the callee answered 486 Busy Here")

    # 3. digest challenge
    reg = StubRegistrar(t)
    uas, uri = start_uas(t, "uas_auth.xml", 2000)
    c = t.parley_call(uri, "call_auth", args=["--line", "office"], timeout=30,
                      line=[{"name": "office", "registrar": f"sip:127.0.0.1:{reg.port}", "user": "1001",
                             "password": "secret", "transport": "udp", "expires": 60}])
    r = uas.wait()
    t.measure("auth.parley_rc", c.rc)
    t.measure("auth.parley_stdout", c.stdout.strip())
    t.measure("auth.sipp_rc", r.rc)
    t.measure("auth.stub_registrar_requests", len(reg.requests))
    check(r.rc == 0, f"sipp (401 challenge, verifyauth 1001/secret) failed: rc={r.rc}\n{r.errors()[-1500:]}")
    check(c.rc == 0, f"parley dial through a digest challenge exited {c.rc} (expected 0)")


if __name__ == "__main__":
    Test("outbound_call", __doc__).run(main)
