"""Malformed input: INVITEs with broken SDP (400), no SDP (200 with an SDP offer, answer in the ACK, RTP to
the answer's port, then BYE), no common codec (488), RTP/SAVP only (488), then garbage datagrams sent raw
over UDP (random bytes, empty and huge datagrams, a truncated INVITE, an INVITE without Call-ID, ...) and
garbage on a TCP connection. Parley must not crash: after each of them a good call is still answered and
the process is alive."""
import os
import random
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import Test, check, log, rtp_packets  # noqa: E402


def invite(sip_port: int, call_id: str | None = "garbage-1@127.0.0.1", body: str | None = None,
           content_length: int | None = None, local_port: int = 5999) -> bytes:
    body = body if body is not None else (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    h = [f"INVITE sip:agent@127.0.0.1:{sip_port} SIP/2.0",
         f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{random.randrange(1 << 30)}",
         f"From: <sip:fuzz@127.0.0.1:{local_port}>;tag=f{random.randrange(1 << 30)}",
         f"To: <sip:agent@127.0.0.1:{sip_port}>"]
    if call_id:
        h.append(f"Call-ID: {call_id}")
    h += ["CSeq: 1 INVITE", f"Contact: <sip:fuzz@127.0.0.1:{local_port}>", "Max-Forwards: 70",
          "Content-Type: application/sdp",
          f"Content-Length: {len(body) if content_length is None else content_length}"]
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


def garbage_cases(sip_port: int, lp: int) -> list[tuple[str, list[bytes]]]:
    """(what, datagrams); lp is the port of our sending socket (for Via/Contact)."""
    rnd = random.Random(1234)
    full = invite(sip_port, local_port=lp)
    return [
        ("random bytes", [bytes(rnd.randrange(256) for _ in range(n)) for n in (1, 13, 200, 1400, 4000)]),
        ("empty datagram and keep-alives", [b"", b"\r\n", b"\r\n\r\n", b"\x00" * 4]),
        ("truncated INVITE", [full[:40], full[:len(full) // 2], full[:full.index(b"\r\n\r\n") + 10]]),
        ("INVITE without Call-ID", [invite(sip_port, call_id=None, local_port=lp)]),
        ("INVITE with Content-Length beyond the body",
         [invite(sip_port, "garbage-2@x", content_length=5000, local_port=lp)]),
        ("INVITE with a negative Content-Length", [invite(sip_port, "garbage-3@x", content_length=-7, local_port=lp)]),
        ("headers with NUL and invalid UTF-8",
         [invite(sip_port, "garbage-4@x", local_port=lp).replace(b"garbage-4@x", b"garbage-4@x\x00\xff\xfe")]),
        ("a 60 KB datagram", [invite(sip_port, "garbage-5@x", body="a=" + "x" * 60000 + "\r\n", local_port=lp)]),
        ("a stray response and a bogus method", [
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKnothing\r\nCall-ID: none\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode(),
            f"FROBNICATE sip:agent@127.0.0.1:{sip_port} SIP/2.0\r\nContent-Length: 0\r\n\r\n".encode()]),
    ]


def send_raw(s: socket.socket, port: int, datagrams: list[bytes]) -> list[str]:
    """Sends each datagram from socket s; returns the first lines of whatever came back within 0.5 s."""
    replies = []
    for d in datagrams:
        s.sendto(d, ("127.0.0.1", port))
    end = time.monotonic() + 0.5
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, _ = s.recvfrom(70000)
            replies.append(data.split(b"\r\n", 1)[0].decode("utf-8", "replace"))
        except (socket.timeout, ConnectionRefusedError):
            break
    return replies


def main(t: Test):
    p = t.parley(call={"handler": "echo"})
    cap = t.capture(f"udp src portrange {p.rtp_lo}-{p.rtp_hi}", "parley_rtp")

    for scen, code in (("uac_bad_sdp_400.xml", 400), ("uac_no_common_codec_488.xml", 488),
                       ("uac_savp_488.xml", 488)):
        r = t.sipp(scen, p.sip_addr, timeout=15)
        t.measure(f"{scen}.rc", r.rc)
        check(r.rc == 0 and r.successful == 1, f"{scen}: expected a {code}: sipp rc={r.rc}\n{r.errors()[-1500:]}")
        p.check_alive(f"after {scen}")
        t.good_call(p, what=f"after {scen}")

    s = t.sipp_start("uac_no_sdp.xml", p.sip_addr, duration_ms=1500, timeout=15)
    r = s.wait()
    t.measure("uac_no_sdp.xml.rc", r.rc)
    check(r.rc == 0 and r.successful == 1, f"INVITE without SDP: sipp rc={r.rc}\n{r.errors()[-1500:]}")
    p.check_alive("after the INVITE without SDP")
    t.good_call(p, what="after the INVITE without SDP")
    pkts = cap.stop()
    to_answer = [x for x in rtp_packets(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1)) if x.dport == s.media_port]
    t.measure("no_sdp_call_rtp_packets_to_answer_port", len(to_answer))
    check(len(to_answer) >= 20, f"INVITE without SDP: Parley sent {len(to_answer)} RTP packets to the port of the "
                                f"answer in our ACK ({s.media_port}); expected >= 20 in 1.5 s")

    fz = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fz.bind(("127.0.0.1", 0))
    t.on_cleanup(fz.close)
    for what, datagrams in garbage_cases(p.sip_port, fz.getsockname()[1]):
        replies = send_raw(fz, p.sip_port, datagrams)
        log(f"sent {what} ({len(datagrams)} datagrams): replies {replies}")
        time.sleep(0.2)
        p.check_alive(f"after {what}")
        t.good_call(p, what=f"after {what}")

    # garbage on TCP: random bytes, then a connection closed in the middle of an INVITE, then one left open
    for what, payload, close in (("TCP random bytes", os.urandom(3000), True),
                                 ("TCP truncated INVITE", invite(p.sip_port)[:120], True),
                                 ("TCP half-sent INVITE left open", invite(p.sip_port)[:200], False)):
        c = socket.create_connection(("127.0.0.1", p.sip_port), timeout=2)
        try:
            c.sendall(payload)
        except OSError as e:
            log(f"{what}: {e}")
        time.sleep(0.2)
        if close:
            c.close()
        else:
            t.on_cleanup(c.close)
        p.check_alive(f"after {what}")
        t.good_call(p, what=f"after {what}")
        t.measure(f"survived: {what}", True)
    p.stop()


if __name__ == "__main__":
    Test("sipp_malformed", __doc__).run(main)
