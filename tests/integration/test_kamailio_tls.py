"""SIP over TLS through a real registrar: Kamailio with its tls module, certificates made now with openssl
(a test CA; a server certificate for 127.0.0.1 from it; Parley's client certificate from it; a second,
unknown CA; a certificate from the test CA for another host name). One Kamailio listens on UDP (for SIPp)
and on three TLS ports: GOOD (test CA, names 127.0.0.1, and it requires and verifies a client certificate),
UNKNOWN_CA (server certificate from the unknown CA) and WRONG_NAME (test CA, but for wrong.example.com).
Parley has three [[line]]s with transport = "tls", one per TLS port, trusting only the test CA (and its
client certificate is the configured tls_cert):
  - line good registers over TLS (event=line_registered; Kamailio saw the REGISTER over TLS with Parley's
    client certificate verified); SIPp calls 1001 over UDP at Kamailio, which relays the INVITE over TLS to
    Parley's TLS listener (the Contact Parley registered): the call is answered, Parley logs the INVITE as
    secure, and the echo carries sound;
  - line unknown_ca fails with event=line_register_failed reason="TLS: certificate verify failed: unable
    to get local issuer certificate ..." and Kamailio never sees its REGISTER;
  - line wrong_name fails with reason="TLS: certificate does not name the host 127.0.0.1 ...";
  - the capture (lo, every port involved) holds TLS records on the GOOD port and on Parley's TLS listener,
    and no SIP in clear from or to Parley: the only clear-text SIP is SIPp <-> Kamailio over UDP.
"""
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (KAMAILIO_ROUTE_START, SIP_START, Test, TestFailure, _tcp_free, check, free_port,  # noqa: E402
                        log, md5hex, read_pcap_l4, rtp_streams, stream_speech_packets, tail, wait_until)

USER, PASSWORD, DOMAIN = "1001", "secret", "127.0.0.1"

KAMAILIO_TLS_CFG = """#!KAMAILIO
# Parley TLS test registrar: digest REGISTER over TLS (db_text), location lookup, relay (UDP in, TLS out).
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
enable_tls=yes
auto_aliases=no
listen=udp:127.0.0.1:{udp}
listen=tls:127.0.0.1:{good}
listen=tls:127.0.0.1:{unknown_ca}
listen=tls:127.0.0.1:{wrong_name}
alias="127.0.0.1:{udp}"
alias="127.0.0.1:{good}"

loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tls.so"
loadmodule "db_text.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"

modparam("tls", "config", "{tls_cfg}")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("registrar", "default_expires", 60)
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("rr", "enable_full_lr", 1)

request_route {{
    xlog("L_INFO", "event=request method=$rm ruri=$ru proto=$pr src=$si:$sp dstport=$Rp peer_verified=$tls_peer_verified peer_cn=$tls_peer_subject_cn\\n");
{route_start}
    if (is_method("REGISTER")) {{
        if ($pr != "tls") {{ sl_send_reply("403", "TLS only"); exit; }}
        if (!auth_check("$fd", "subscriber", "1")) {{
            auth_challenge("$fd", "0");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{ sl_reply_error(); exit; }}
        xlog("L_INFO", "event=registered aor=$tu contact=$ct proto=$pr peer_verified=$tls_peer_verified peer_cn=$tls_peer_subject_cn\\n");
        exit;
    }}
    if (is_method("INVITE") && $rU == "busy") {{
        xlog("L_INFO", "event=busy ruri=$ru proto=$pr\n");
        sl_send_reply("486", "Busy Here");
        exit;
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{
        xlog("L_INFO", "event=not_found ruri=$ru\\n");
        sl_send_reply("404", "Not Found");
        exit;
    }}
    xlog("L_INFO", "event=relay method=$rm to=$ru\\n");
    t_relay();
}}
"""

TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
certificate = {d}/server.crt
private_key = {d}/server.key
ca_list = {d}/ca.crt

[server:127.0.0.1:{unknown_ca}]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {d}/other.crt
private_key = {d}/other.key

[server:127.0.0.1:{wrong_name}]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {d}/wrongname.crt
private_key = {d}/wrongname.key

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
ca_list = {d}/ca.crt
"""


def make_certs(t: Test) -> Path:
    """A test CA, an unknown CA, and the leaf certificates (EC P-256, 1 day) in <workdir>/pki."""
    d = t.dir / "pki"
    d.mkdir()

    def ossl(*args):
        t.run_cmd(["openssl", *args], timeout=30, cwd=d)

    def ca(name, cn):
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
             "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, cn, san, ca_name):
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                                       "extendedKeyUsage=serverAuth,clientAuth\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.crt", "-CAkey", f"{ca_name}.key",
             "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt")

    ca("ca", "Parley Test CA")
    ca("otherca", "Unknown Test CA")
    leaf("server", "127.0.0.1", "IP:127.0.0.1,DNS:127.0.0.1", "ca")
    leaf("parley", "parley.test", "DNS:parley.test,IP:127.0.0.1", "ca")
    leaf("other", "127.0.0.1", "IP:127.0.0.1,DNS:127.0.0.1", "otherca")
    leaf("wrongname", "wrong.example.com", "DNS:wrong.example.com", "ca")
    return d


def tcp_port_set(n: int) -> list[int]:
    out = []
    while len(out) < n:
        p = free_port()
        if p not in out:
            out.append(p)
    return out


def start_kamailio(t: Test, pki: Path, udp: int, good: int, unknown_ca: int, wrong_name: int):
    kdir = t.dir / "kamailio"
    db, run = kdir / "db", kdir / "run"
    db.mkdir(parents=True)
    run.mkdir()
    src = Path("/usr/share/kamailio/dbtext/kamailio")
    (db / "version").write_text((src / "version").read_text())
    ha1 = md5hex(f"{USER}:{DOMAIN}:{PASSWORD}")
    ha1b = md5hex(f"{USER}@{DOMAIN}:{DOMAIN}:{PASSWORD}")
    (db / "subscriber").write_text((src / "subscriber").read_text().rstrip("\n") +
                                   f"\n1:{USER}:{DOMAIN}:{PASSWORD}:{ha1}:{ha1b}\n")
    tls_cfg = kdir / "tls.cfg"
    tls_cfg.write_text(TLS_CFG.format(d=pki, unknown_ca=unknown_ca, wrong_name=wrong_name))
    cfg = kdir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_TLS_CFG.format(route_start=KAMAILIO_ROUTE_START, udp=udp, good=good,
                                           unknown_ca=unknown_ca, wrong_name=wrong_name,
                                           tls_cfg=tls_cfg, db=db))
    t.run_cmd(["kamailio", "-c", "-f", cfg], timeout=30)
    log_path = t.dir / "kamailio.log"
    logf = open(log_path, "wb")
    proc = t.spawn(["kamailio", "-f", cfg, "-DD", "-E", "-Y", run, "-P", run / "kamailio.pid", "-m", "64",
                    "-M", "8"], name="kamailio", log_path=log_path, stdout=logf, stderr=subprocess.STDOUT)

    def up():
        if proc.poll() is not None:
            raise TestFailure(f"kamailio exited with {proc.returncode}: {tail(log_path, 15)}")
        return not any(_tcp_free(p) for p in (good, unknown_ca, wrong_name))
    wait_until(up, 15, what="kamailio to listen on its TLS ports")
    time.sleep(0.5)  # workers fork after the sockets are bound
    log(f"kamailio up: udp {udp}, tls good {good} unknown_ca {unknown_ca} wrong_name {wrong_name}")
    return proc, log_path


def main(t: Test):
    pki = make_certs(t)
    udp = free_port(tcp=False)
    good, unknown_ca, wrong_name, parley_tls = tcp_port_set(4)
    t.speech_ulaw("hello, calling over transport layer security", seconds=1.0)

    # The good line sends keep-alives every second: over TLS, like its REGISTERs.
    p = t.parley(
        sip={"tls_listen": f"127.0.0.1:{parley_tls}", "tls_cert": str(pki / "parley.crt"),
             "tls_key": str(pki / "parley.key"), "tls_ca_file": str(pki / "ca.crt"),
             "tls_dir": str(t.dir / "parley-tls"), "local_networks": ["10.0.0.0/8"]},
        line=[{"name": "good", "registrar": f"sip:127.0.0.1:{good}", "user": USER, "password": PASSWORD,
               "transport": "tls", "expires": 60, "keepalive_s": 1},
              {"name": "unknown_ca", "registrar": f"sips:127.0.0.1:{unknown_ca}", "user": "1002",
               "password": PASSWORD, "expires": 60},
              {"name": "wrong_name", "registrar": f"sip:127.0.0.1:{wrong_name}", "user": "1003",
               "password": PASSWORD, "transport": "tls", "expires": 60}],
        start=False)
    _, klog = start_kamailio(t, pki, udp, good, unknown_ca, wrong_name)
    ports = {udp, good, unknown_ca, wrong_name, parley_tls, p.sip_port}
    cap = t.capture("host 127.0.0.1 and (" + " or ".join(f"port {x}" for x in sorted(ports)) +
                    f" or udp portrange {p.rtp_lo}-{p.rtp_hi})", "tls")
    p.start()
    ev = p.wait_event("line_registered", timeout=15, line="good")
    t.measure("line_registered", ev[0]["_line"].split("event=", 1)[-1])
    fails = {}
    for name in ("unknown_ca", "wrong_name"):
        e = p.wait_event("line_register_failed", timeout=15, line=name)
        fails[name] = e[0]
        t.measure(f"{name}_failed", e[0]["_line"].split("event=", 1)[-1])

    ktext = klog.read_text(errors="replace")
    reg = [ln for ln in ktext.splitlines() if "event=registered" in ln]
    t.measure("kamailio_registered", reg[:1])
    check(reg and "proto=tls" in reg[0], f"Kamailio did not log a REGISTER saved over TLS: {reg[:2]}")
    check("peer_verified=1" in reg[0] and "peer_cn=parley.test" in reg[0],
          f"Kamailio did not verify Parley's client certificate (CN parley.test): {reg[0]}")
    contact = re.search(r"contact=(\S+)", reg[0]).group(1)
    check(contact.startswith("<sips:") or "transport=tls" in contact.lower(),
          f"Parley registered a Contact that is not TLS: {contact}")

    r = t.sipp("uac_echo.xml", f"127.0.0.1:{udp}", service=USER, duration_ms=1600, timeout=20)
    t.measure("call_sipp_rc", r.rc)
    time.sleep(0.5)
    secure = p.events("sip_invite_secure")
    t.measure("sip_invite_secure", len(secure))

    sipp_port = t.sipp_local_port

    # Outgoing calls on the TLS line (`parley dial --line good`): a plain sip: target goes over TLS (Kamailio
    # answers 486 to user "busy" and logs the transport); a target naming transport=udp is refused by Parley
    # and never sent.
    dial_cfg = dict(sip={"tls_listen": f"127.0.0.1:{free_port()}", "tls_cert": str(pki / "parley.crt"),
                         "tls_key": str(pki / "parley.key"), "tls_ca_file": str(pki / "ca.crt"),
                         "tls_dir": str(t.dir / "dial-tls")},
                    line=[{"name": "good", "registrar": f"sip:127.0.0.1:{good}", "user": USER,
                           "password": PASSWORD, "transport": "tls", "expires": 60}])
    busy = t.parley_call(f"sip:busy@127.0.0.1:{good}", "dial_tls", args=["--line", "good"], timeout=15, **dial_cfg)
    in_clear = t.parley_call(f"sip:busy@127.0.0.1:{udp};transport=udp", "dial_clear", args=["--line", "good"],
                          timeout=15, **dial_cfg)
    busy_log = [ln for ln in klog.read_text(errors="replace").splitlines() if "event=busy" in ln]
    t.measure("outgoing_busy_at_kamailio", [ln.split("event=", 1)[-1] for ln in busy_log])
    t.expect(busy.rc != 0 and len(busy_log) == 1 and "proto=tls" in busy_log[0],
             f"the outgoing call on the TLS line did not reach Kamailio over TLS exactly once: rc={busy.rc} "
             f"{busy_log}")
    refused = "event=call_refused_clear" in in_clear.log_path.read_text(errors="replace")
    t.measure("outgoing_clear_refused", refused)
    t.expect(in_clear.rc != 0 and refused,
             f"a transport=udp target on the TLS line was not refused: rc={in_clear.rc}")

    # Keep-alives of the TLS line reached Kamailio over TLS (a UDP one would also show in the capture below).
    opts = [ln for ln in klog.read_text(errors="replace").splitlines()
            if "method=OPTIONS" in ln and f"dstport={good}" in ln]
    t.measure("keepalives_at_kamailio", len(opts))
    t.expect(len(opts) >= 2 and all("proto=tls" in ln for ln in opts),
             f"keep-alives of the TLS line: expected 2 or more over TLS, got {[ln[-120:] for ln in opts[:3]]}")

    # The two bad lines: still failing (retrying), never registered, reasons that say why.
    for name in ("unknown_ca", "wrong_name"):
        t.expect(not p.events("line_registered", line=name), f"line {name} registered despite a bad certificate")
    ktext = klog.read_text(errors="replace")
    for port, name in ((unknown_ca, "unknown_ca"), (wrong_name, "wrong_name")):
        got = [ln for ln in ktext.splitlines() if "method=REGISTER" in ln and f"dstport={port}" in ln]
        t.expect(not got, f"Kamailio received a REGISTER on the {name} port despite the bad certificate: {got[:1]}")
    p.stop()
    cap.stop()

    why_ca = fails["unknown_ca"].get("reason", "")
    why_name = fails["wrong_name"].get("reason", "")
    t.expect(why_ca.startswith("TLS: certificate verify failed") and "unable to get local issuer" in why_ca,
             f"unknown CA: reason={why_ca!r} (expected 'TLS: certificate verify failed: unable to get local "
             "issuer certificate ...')")
    t.expect(why_name.startswith("TLS: certificate does not name the host 127.0.0.1"),
             f"wrong name: reason={why_name!r} (expected 'TLS: certificate does not name the host 127.0.0.1')")

    check(r.rc == 0 and r.successful == 1,
          f"the call to {USER} via Kamailio (UDP in, TLS to Parley) failed: rc={r.rc}\n{r.errors()[-1500:]}")
    t.expect(len(secure) == 1, f"expected one event=sip_invite_secure for the call over TLS, got {len(secure)}")

    # The capture: TLS records where Parley talks, no SIP in clear but the SIPp <-> Kamailio UDP leg.
    l4 = read_pcap_l4(cap.path)
    clear = [(proto, sp, dp, pl[:40]) for _, proto, sp, dp, pl in l4 if pl and SIP_START.match(pl)]
    outside_sipp_leg = [c for c in clear if not (c[0] == "udp" and {c[1], c[2]} == {udp, sipp_port})]
    t.measure("clear_sip_packets", len(clear))
    t.measure("clear_sip_outside_sipp_leg", outside_sipp_leg[:5])
    check(clear, "the capture holds no clear SIP at all (the SIPp leg must be there: is the capture working?)")
    check(not outside_sipp_leg, f"SIP in clear outside the SIPp<->Kamailio UDP leg: {outside_sipp_leg[:5]}")
    # sofia-sip sends one 4-byte "TEST" datagram from its UDP socket to itself at start: not to anyone else.
    parley_udp = [x for x in l4 if x[1] == "udp" and p.sip_port in (x[2], x[3]) and x[2] != x[3]]
    check(not parley_udp, f"{len(parley_udp)} UDP packets to/from Parley's SIP port (expected none: TLS only)")

    def tls_records(port):  # application-data records (content type 23, TLS 1.2/1.3 record version 0x0303)
        return sum(1 for _, proto, sp, dp, pl in l4
                   if proto == "tcp" and port in (sp, dp) and len(pl) >= 5 and pl[0] == 23 and pl[1:3] == b"\x03\x03")
    rec_good, rec_parley = tls_records(good), tls_records(parley_tls)
    t.measure("tls_app_records_registrar_port", rec_good)
    t.measure("tls_app_records_parley_listener", rec_parley)
    check(rec_good >= 4, f"only {rec_good} TLS application records on the registrar's TLS port")
    check(rec_parley >= 4, f"only {rec_parley} TLS application records on Parley's TLS listener (the call)")

    streams = rtp_streams(cap.packets, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    sound = [stream_speech_packets(s) for s in streams.values()]
    t.measure("echo_speech_packets", sound)
    check(sound and max(sound) >= 10, "the call over TLS got no echoed sound from Parley")


if __name__ == "__main__":
    Test("kamailio_tls", __doc__).run(main)
