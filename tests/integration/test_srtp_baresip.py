"""SRTP with SDES keys against a real softphone: baresip (its srtp module, `mediaenc=srtp-mand` on the
account: it offers RTP/SAVP with a=crypto and nothing else) calls Parley (media.srtp = "required", echo).

Cases 1-3 run over plain UDP signalling, where Parley refuses SDES unless media.srtp_insecure_signalling =
true (SDES keys then travel in clear SIP, which only a lab may accept); case 4 is the real thing: the same
call over TLS, without that key.

1. Refused without the allow key: the same baresip call over UDP gets 488 (baresip's log says so) and
   Parley logs one event=call_rejected status=488 line whose reason names the unencrypted signalling.
2. Allowed: the call is answered with srtp=<suite> in event=call_answered, and
   * what baresip heard (dump-*-dec.wav) is the speech it sent (dump-*-enc.wav) echoed: envelope
     correlation >= 0.7 at a lag of about echo_delay_ms: audio went both ways through SRTP;
   * every RTP packet Parley sent (tshark on lo) carries the suite's auth tag (payload 160 + 10 or 4 bytes)
     and the payloads are not G.711: their byte entropy is >= 7.8 bits (encrypted), where the same number
     of bytes of the G.711 that baresip encoded has far less;
   * TAMPERED packets, made from a real SRTP packet of baresip (sniffed on lo) with its sequence number
     moved ahead and one payload bit flipped, are sent from baresip's own address and port (a raw socket:
     the negotiated-source check would drop any other source as foreign before SRTP): Parley's
     event=call_ended reports srtp_auth_failed=TAMPERED and /metrics parley_srtp_auth_failed_total too,
     and the echo is still heard (above).
3. Outgoing (`parley dial`, media.srtp = "required"): without the allow key the call is refused before any
   INVITE, with the reason in event=call_failed; with it, Parley's RTP/SAVP offer (tags 1 and 2) is
   answered by baresip (answermode=auto, srtp-mand), Parley logs srtp=<suite> and what baresip heard is
   its own speech echoed through SRTP both ways.
4. Over TLS, no allow key: a test CA and Parley's server certificate for 127.0.0.1 are made now with openssl;
   Parley has sip.tls_listen/tls_cert/tls_key and media.srtp = "required"; baresip is given the test CA
   (`sip_cafile`) and dials sip:agent@127.0.0.1:<tls port>;transport=tls. The call is answered and Parley
   logs event=sip_invite_secure; the checks of 2. hold (suite, tampered packets counted exactly, tag-sized
   payloads with ciphertext entropy, echo correlation); and the capture (Parley's SIP and TLS ports,
   baresip's SIP ports, Parley's RTP range) holds no clear-text SIP at all, no UDP on Parley's SIP port, and
   TLS application records on Parley's TLS port. (baresip's libre knows no sips: URIs: Parley answers a
   sip:...;transport=tls INVITE with a sip:...;transport=tls Contact, else baresip's ACK fails.)
   baresip 1.0.0 does not verify the server even with sip_cafile (it calls a self-signed Parley as well):
   this shows encryption of signalling and media, not that baresip authenticated Parley.
Needs root (tshark, raw and packet sockets on lo). About 55 s (case 4: about 17 s)."""
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (SIP_START, Test, _tcp_free, _udp_free, baresip_call, best_lag, check, envelope,  # noqa: E402
                        free_port, log, parse_rtp, read_pcap_l4, read_wav, speech_wav, tail, ulaw_encode,
                        wait_until)

ECHO_DELAY_MS = 200
MIN_CORR = 0.7
TAMPERED = 5
MIN_ENTROPY = 7.8
SRTP_ACCOUNT = ";mediaenc=srtp-mand"


def make_pki(t: Test) -> Path:
    """A test CA and, from it, Parley's server certificate for 127.0.0.1 (EC P-256, 1 day) in <workdir>/pki
    (as tests/integration/test_kamailio_tls.py makes them)."""
    d = t.dir / "pki"
    d.mkdir()

    def ossl(*args):
        t.run_cmd(["openssl", *args], timeout=30, cwd=d)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=Parley Test CA", "-keyout", "ca.key", "-out", "ca.crt",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", "parley.key", "-out", "parley.csr")
    (d / "parley.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "extendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "parley.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
         "-extfile", "parley.ext", "-out", "parley.crt")
    return d


def entropy_bits(data: bytes) -> float:
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(float)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())


def sniff_one(src_port: int, dst_port: int, timeout: float) -> bytes:
    """The UDP payload of one datagram 127.0.0.1:src_port -> 127.0.0.1:dst_port seen on lo."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    try:
        s.bind(("lo", 0))
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = s.recv(65535)
            except socket.timeout:
                continue
            ip = frame[14:]  # lo frames carry a zeroed Ethernet header
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            ihl = (ip[0] & 15) * 4
            sport, dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
            if sport == src_port and dport == dst_port:
                return ip[ihl + 8:ihl + length]
        raise RuntimeError(f"no datagram {src_port} -> {dst_port} on lo within {timeout} s")
    finally:
        s.close()


def send_spoofed(src_port: int, dst_port: int, payload: bytes):
    """A UDP datagram from 127.0.0.1:src_port (a port another process owns) to 127.0.0.1:dst_port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        s.sendto(struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload, ("127.0.0.1", 0))
    finally:
        s.close()


def tamper(p, state: dict):
    """Runs beside the call: waits for it to be answered, then sends TAMPERED forged copies of baresip's SRTP."""
    try:
        ev = wait_until(lambda: p.events("call_answered"), 15, what="event=call_answered")[0]
        local_port, remote_port = int(ev["local_port"]), int(ev["remote"].rsplit(":", 1)[1])
        real = sniff_one(remote_port, local_port, 5.0)
        seq = struct.unpack("!H", real[2:4])[0]
        for i in range(TAMPERED):
            bad = bytearray(real)
            # A sequence number the receiver has not seen yet (else it would be a replay, not an
            # authentication failure), and one flipped payload bit.
            bad[2:4] = struct.pack("!H", (seq + 500 + 7 * i) & 0xFFFF)
            bad[20] ^= 0x10
            send_spoofed(remote_port, local_port, bytes(bad))
            time.sleep(0.1)
        state["sent"] = TAMPERED
        state["ports"] = (local_port, remote_port)
    except Exception as e:  # reported by the main thread
        state["error"] = repr(e)


def tampered_call(t: Test, p, cap, target: str, mic, quit_after, what: str, **baresip_kw):
    """baresip (SRTP mandatory) calls `target` while tamper() sends TAMPERED altered copies of its packets;
    returns (Parley's captured packets, the tamper state, baresip's recording)."""
    state: dict = {}
    th = threading.Thread(target=tamper, args=(p, state), daemon=True)
    th.start()
    blog, rec, _ = baresip_call(t, target, mic, quit_after, extra_modules=("srtp.so",), account_params=SRTP_ACCOUNT,
                                **baresip_kw)
    th.join(20)
    packets = cap.stop()
    check("Call established" in blog.read_text(errors="replace"),
          f"baresip's SRTP call {what} was not established:\n{tail(blog, 15)}")
    check("error" not in state, f"tampering failed: {state.get('error')}")
    check(state.get("sent") == TAMPERED, "the tampered packets were not sent")
    p.check_alive(f"after the baresip SRTP call {what}")
    return packets, state, rec


def check_answered_srtp(t: Test, p, packets, state: dict, rec: Path, pre: str = "") -> str:
    """The checks of an answered incoming SRTP call with tampering (see the docstring, 2.): suite, tampered
    packets counted (call_ended, /metrics), Parley's payloads tag-sized with ciphertext entropy, baresip's
    too, and the echo heard. `pre` prefixes the measure names. Returns the suite."""
    answered = p.events("call_answered")
    check(answered, "no event=call_answered")
    suite = answered[0].get("srtp")
    t.measure(pre + "srtp_suite", suite)
    check(suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"), f"call not answered with SRTP: {suite}")
    ended = p.wait_event("call_ended", timeout=15)[0]
    t.measure(pre + "srtp_auth_failed", ended.get("srtp_auth_failed"))
    check(ended.get("srtp_auth_failed") == str(TAMPERED),
          f"Parley counted {ended.get('srtp_auth_failed')} failed packets, {TAMPERED} were tampered: {ended['_line']}")
    code, body = p.api_get("/metrics", auth=False)
    if code == 401:
        code, body = p.api_get("/metrics")
    metric = [ln for ln in body.decode(errors="replace").splitlines() if ln.startswith("parley_srtp_auth_failed_total")]
    t.measure(pre + "metric", metric)
    check(code == 200 and metric and float(metric[0].split()[-1]) == TAMPERED,
          f"/metrics parley_srtp_auth_failed_total is not {TAMPERED}: {code} {metric}")
    check("inline:" not in p.text() or "inline:<redacted>" in p.text(), "an SDES key reached Parley's log")

    # Parley's packets on the wire: SRTP-sized and not G.711.
    local_port, remote_port = state["ports"]
    sent = [r for r in (parse_rtp(u) for u in packets if u.sport == local_port and u.dport == remote_port) if r]
    check(len(sent) > 100, f"only {len(sent)} RTP packets from Parley captured")
    tag = 10 if suite.endswith("_80") else 4
    sizes = sorted({len(r.payload) for r in sent})
    t.measure(pre + "parley_payload_sizes", sizes)
    check(sizes == [160 + tag], f"Parley's packets are not 20 ms of G.711 plus a {tag}-byte SRTP tag: {sizes}")
    wire = b"".join(r.payload[:160] for r in sent)
    h_wire = entropy_bits(wire)
    _, enc_pcm = read_wav(sorted(rec.glob("dump-*-enc.wav"))[-1])
    ulaw = ulaw_encode(enc_pcm[: len(wire)] * 32768)
    h_plain = entropy_bits(ulaw)
    t.measure(pre + "entropy_wire_bits", round(h_wire, 3))
    t.measure(pre + "entropy_g711_bits", round(h_plain, 3))
    check(h_wire >= MIN_ENTROPY, f"Parley's payloads look like plain audio: {h_wire:.2f} bits/byte < {MIN_ENTROPY}")
    check(h_plain < MIN_ENTROPY - 0.5, f"the G.711 reference is not distinguishable ({h_plain:.2f} bits/byte)")
    from_baresip = [r for r in (parse_rtp(u) for u in packets if u.sport == remote_port and u.dport == local_port) if r]
    h_in = entropy_bits(b"".join(r.payload for r in from_baresip[:400]))
    t.measure(pre + "entropy_baresip_wire_bits", round(h_in, 3))
    check(h_in >= MIN_ENTROPY, f"baresip's payloads are not encrypted: {h_in:.2f} bits/byte")

    # The echo through SRTP both ways.
    enc = sorted(rec.glob("dump-*-enc.wav"))
    dec = sorted(rec.glob("dump-*-dec.wav"))
    check(enc and dec, f"baresip's sndfile recordings missing: {[x.name for x in rec.iterdir()]}")
    r_enc, sent_audio = read_wav(enc[-1])
    r_dec, heard = read_wav(dec[-1])
    lag, corr = best_lag(envelope(sent_audio, r_enc), envelope(heard, r_dec), max_lag=150)
    t.measure(pre + "envelope_correlation", round(corr, 3))
    t.measure(pre + "best_lag_ms", lag * 10)
    check(corr >= MIN_CORR, f"what baresip heard is not its own speech echoed: correlation {corr:.3f} < {MIN_CORR}")
    check(ECHO_DELAY_MS - 50 <= lag * 10 <= ECHO_DELAY_MS + 500, f"echo lag {lag * 10} ms is not about echo_delay_ms")
    return suite


def main(t: Test):
    mic = speech_wav(t, "hello, this is baresip talking to the parley echo agent over secure r t p. one, two, three.",
                     t.dir / "mic.wav", 8000, pad=(0.5, 3.0))
    _, mic_samples = read_wav(mic)
    quit_after = int(len(mic_samples) / 8000) + 5

    # ---- 1. UDP signalling without the allow key: refused, and the log says why --------------------------
    log("--- 1: RTP/SAVP over UDP signalling, media.srtp_insecure_signalling not set: 488")
    p0 = t.parley(name="parley-strict", media={"srtp": "required"}, call={"handler": "echo"})
    blog0, _, _ = baresip_call(t, p0.sip_addr, mic, 4, name="baresip-refused", extra_modules=("srtp.so",),
                               account_params=SRTP_ACCOUNT)
    out0 = blog0.read_text(errors="replace")
    rejected = p0.events("call_rejected", status="488")
    t.measure("refused_reason", rejected[0].get("reason") if rejected else None)
    check(len(rejected) == 1 and "unencrypted signalling" in rejected[0].get("reason", ""),
          f"Parley did not refuse SRTP over UDP with one clear 488 line: {[e['_line'] for e in p0.events('call_rejected')]}")
    check("488" in out0, f"baresip did not see 488:\n{tail(blog0, 15)}")
    check("Call established" not in out0, "the call was established although SDES keys would travel in clear")
    check(not p0.events("call_answered"), "Parley answered the refused call")
    check("inline:" not in p0.text() or "inline:<redacted>" in p0.text(), "an SDES key reached Parley's log")
    p0.stop()

    # ---- 2. allowed explicitly: SRTP both ways, echo heard, tampered packets counted -----------------------
    log("--- 2: the same call with media.srtp_insecure_signalling = true")
    p = t.parley(media={"srtp": "required", "srtp_insecure_signalling": True},
                 call={"handler": "echo", "echo_delay_ms": ECHO_DELAY_MS})
    cap = t.capture(f"udp portrange {p.rtp_lo}-{p.rtp_hi}", "parley_rtp")
    packets, state, rec = tampered_call(t, p, cap, p.sip_addr, mic, quit_after, "over UDP")
    check_answered_srtp(t, p, packets, state, rec)
    p.stop()

    # ---- 3. outgoing: our RTP/SAVP offer ----------------------------------------------------------------
    log("--- 3: parley dial with media.srtp = required: refused over UDP, then allowed, baresip answers")
    bport = free_port(tcp=False)
    c0 = t.parley_call(f"sip:baresip@127.0.0.1:{bport}", "dial-refused", timeout=10, media={"srtp": "required"})
    failed = [ln for ln in c0.log_path.read_text(errors="replace").splitlines() if "event=call_failed" in ln]
    t.measure("dial_refused", failed)
    check(c0.rc != 0 and failed and "unencrypted signalling" in failed[0],
          f"parley dial with SRTP required over UDP was not refused with its reason: rc={c0.rc} {failed}")

    callee: dict = {}

    def run_callee():
        try:
            callee["result"] = baresip_call(t, "", mic, quit_after + 2, name="baresip-callee",
                                            extra_modules=("srtp.so",), account_params=SRTP_ACCOUNT, dial=False,
                                            sip_port=bport)
        except Exception as e:  # reported by the main thread
            callee["error"] = repr(e)
    th = threading.Thread(target=run_callee, daemon=True)
    th.start()
    wait_until(lambda: not _udp_free(bport) or "error" in callee, 10, what="baresip to listen")
    c = t.parley_call(f"sip:baresip@127.0.0.1:{bport}", "dial-srtp", timeout=quit_after + 6,
                      media={"srtp": "required", "srtp_insecure_signalling": True},
                      call={"handler": "echo", "echo_delay_ms": ECHO_DELAY_MS})
    th.join(quit_after + 40)
    check("error" not in callee and "result" in callee, f"baresip as callee failed: {callee.get('error')}")
    dial_log = c.log_path.read_text(errors="replace")
    answered_out = [ln for ln in dial_log.splitlines() if "event=call_answered" in ln]
    t.measure("dial_answered", answered_out)
    check(answered_out and "srtp=AES_CM_128_HMAC_SHA1_" in answered_out[0],
          f"the outgoing call was not answered with SRTP: {answered_out or tail(c.log_path, 10)}")
    check("inline:" not in dial_log or "inline:<redacted>" in dial_log, "an SDES key reached the log")
    _, crec, _ = callee["result"]
    cenc, cdec = sorted(crec.glob("dump-*-enc.wav")), sorted(crec.glob("dump-*-dec.wav"))
    check(cenc and cdec, f"baresip callee's recordings missing: {[x.name for x in crec.iterdir()]}")
    r1, s1 = read_wav(cenc[-1])
    r2, h1 = read_wav(cdec[-1])
    lag, corr = best_lag(envelope(s1, r1), envelope(h1, r2), max_lag=150)
    t.measure("outgoing_envelope_correlation", round(corr, 3))
    t.measure("outgoing_best_lag_ms", lag * 10)
    check(corr >= MIN_CORR, f"outgoing SRTP call: baresip did not hear its speech echoed (correlation {corr:.3f})")


    # ---- 4. over TLS, without the allow key: what the feature is for ------------------------------------
    log("--- 4: baresip calls Parley over TLS (sip_cafile = the test CA), media.srtp = required, no allow key")
    pki = make_pki(t)
    tls_port = free_port()
    for _ in range(50):  # baresip 1.0.0 also listens for TLS on its SIP port + 1
        bport = free_port(tcp=False)
        if _tcp_free(bport) and _tcp_free(bport + 1) and bport + 1 != tls_port:
            break
    pt = t.parley(name="parley-tls",
                  sip={"tls_listen": f"127.0.0.1:{tls_port}", "tls_cert": str(pki / "parley.crt"),
                       "tls_key": str(pki / "parley.key"), "tls_ca_file": str(pki / "ca.crt"),
                       "tls_dir": str(t.dir / "parley-tls-dir")},
                  media={"srtp": "required"}, call={"handler": "echo", "echo_delay_ms": ECHO_DELAY_MS})
    ports = sorted({pt.sip_port, tls_port, bport, bport + 1})
    cap4 = t.capture("host 127.0.0.1 and (" + " or ".join(f"port {x}" for x in ports) +
                     f" or udp portrange {pt.rtp_lo}-{pt.rtp_hi})", "tls_srtp")
    packets4, state4, rec4 = tampered_call(t, pt, cap4, f"127.0.0.1:{tls_port};transport=tls", mic, quit_after,
                                           "over TLS", name="baresip-tls", sip_port=bport,
                                           extra_config=f"sip_cafile\t\t{pki / 'ca.crt'}")
    secure = pt.events("sip_invite_secure")
    t.measure("tls_sip_invite_secure", [e["_line"].split("event=", 1)[-1] for e in secure])
    check(len(secure) == 1, f"expected one event=sip_invite_secure for baresip's INVITE over TLS, got {len(secure)}")
    check_answered_srtp(t, pt, packets4, state4, rec4, pre="tls_")
    pt.stop()

    # The signalling on the wire: TLS records on Parley's TLS port, no SIP in clear on any captured port.
    l4 = read_pcap_l4(cap4.path)
    clear = [(proto, sp, dp, pl[:40]) for _, proto, sp, dp, pl in l4 if pl and SIP_START.match(pl)]
    t.measure("tls_clear_sip_packets", clear[:5])
    check(not clear, f"SIP in clear from or to Parley: {clear[:5]}")
    sip_udp = [x for x in l4 if x[1] == "udp" and pt.sip_port in (x[2], x[3]) and x[2] != x[3]]
    check(not sip_udp, f"{len(sip_udp)} UDP packets to/from Parley's SIP port (expected none: the call is over TLS)")
    tls_app = sum(1 for _, proto, sp, dp, pl in l4
                  if proto == "tcp" and tls_port in (sp, dp) and len(pl) >= 5 and pl[0] == 23 and pl[1:3] == b"\x03\x03")
    t.measure("tls_app_records_parley_listener", tls_app)
    check(tls_app >= 4, f"only {tls_app} TLS application records on Parley's TLS port (INVITE, 100, 200, ACK, BYE...)")


if __name__ == "__main__":
    Test("srtp_baresip", __doc__).run(main)
