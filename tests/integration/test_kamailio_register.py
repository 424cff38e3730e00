"""Registration through a real registrar: Kamailio (db_text subscriber 1001/secret, digest auth required
for REGISTER, min_expires 5) on a free loopback port. Parley registers a [[line]] with expires=10:
event=line_registered in its log, and the capture must show at least two successful (200 OK) REGISTERs
with a non-zero expiry within 15 s (the first and a refresh). Then sipp calls sip:1001@<kamailio>; Kamailio
looks up the location and relays to Parley, which answers in echo mode (sipp succeeds, the echo carries
sound). On SIGTERM Parley un-registers: a REGISTER with Expires: 0 (or ;expires=0 / Contact: *) must be
in the capture. Kamailio is always stopped at the end."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (Test, TestFailure, _udp_free, check, free_port, log, md5hex, rtp_streams,  # noqa: E402
                        sip_first_line, sip_header, sip_messages, stream_speech_packets, wait_until)

USER, PASSWORD, DOMAIN = "1001", "secret", "127.0.0.1"
EXPIRES = 10

KAMAILIO_CFG = """#!KAMAILIO
# Parley integration test registrar: digest-authenticated REGISTER (db_text), location lookup, relay.
debug=2
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="127.0.0.1:{port}"

loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
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

modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("registrar", "default_expires", 60)
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("rr", "enable_full_lr", 1)

request_route {{
    xlog("L_INFO", "event=request method=$rm ruri=$ru src=$si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{
        if (!auth_check("$fd", "subscriber", "1")) {{
            xlog("L_INFO", "event=challenge aor=$tu\\n");
            auth_challenge("$fd", "0");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{ sl_reply_error(); exit; }}
        xlog("L_INFO", "event=registered aor=$tu contact=$ct\\n");
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


def start_kamailio(t: Test, port: int):
    kdir = t.dir / "kamailio"
    db, run = kdir / "db", kdir / "run"
    db.mkdir(parents=True)
    run.mkdir()
    src = Path("/usr/share/kamailio/dbtext/kamailio")
    (db / "version").write_text((src / "version").read_text())
    ha1 = md5hex(f"{USER}:{DOMAIN}:{PASSWORD}")
    ha1b = md5hex(f"{USER}@{DOMAIN}:{DOMAIN}:{PASSWORD}")
    (db / "subscriber").write_text((src / "subscriber").read_text().rstrip("\n") + "\n"
                                   + f"1:{USER}:{DOMAIN}:{PASSWORD}:{ha1}:{ha1b}\n")
    cfg = kdir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=port, db=db))
    r = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, timeout=30)
    check(r.returncode == 0, f"kamailio -c rejected the config: {r.stderr.decode(errors='replace')[-1500:]}")
    log_path = t.dir / "kamailio.log"
    logf = open(log_path, "wb")
    proc = t.spawn(["kamailio", "-f", cfg, "-DD", "-E", "-Y", run, "-P", run / "kamailio.pid", "-m", "64", "-M", "8"],
                   name="kamailio", log_path=log_path, stdout=logf, stderr=subprocess.STDOUT)

    def up():
        if proc.poll() is not None:
            raise TestFailure(f"kamailio exited with {proc.returncode}")
        return not _udp_free(port)
    wait_until(up, 15, what="kamailio to listen")
    time.sleep(0.5)
    log(f"kamailio listening on 127.0.0.1:{port} (pid {proc.pid})")
    return proc


def stop_kamailio(t: Test, proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            log("kamailio did not exit within 10 s of SIGTERM")
    t.kill(proc)  # and any worker left in its process group


def register_expiry(msg: str):
    """The expiry a REGISTER asks for: Contact ;expires= wins over Expires:; '*' means 0; None if unstated."""
    contact = sip_header(msg, "Contact", "m") or ""
    if contact.strip() == "*":
        return 0
    m = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.I)
    if m:
        return int(m.group(1))
    e = sip_header(msg, "Expires")
    return int(e) if e and e.strip().isdigit() else None


def main(t: Test):
    kport = free_port(tcp=False)
    kam = start_kamailio(t, kport)
    t.on_cleanup(lambda: stop_kamailio(t, kam))
    t.speech_ulaw("hello, calling through kamailio", seconds=1.0)

    p = t.parley(line=[{"name": "office", "registrar": f"sip:127.0.0.1:{kport}", "user": USER,
                        "password": PASSWORD, "transport": "udp", "expires": EXPIRES}], start=False)
    cap = t.capture(f"udp port {kport} or udp port {p.sip_port} or udp src portrange {p.rtp_lo}-{p.rtp_hi}",
                    "kamailio")
    p.start()
    t_start = time.monotonic()
    ev = p.wait_event("line_registered", timeout=10)
    t.measure("line_registered", ev[0]["_line"].split("event=", 1)[-1])

    r = t.sipp("uac_echo.xml", f"127.0.0.1:{kport}", service=USER, duration_ms=1600, timeout=20)
    t.measure("call_via_kamailio_sipp_rc", r.rc)

    # stay registered long enough for a refresh (expires=10): 16 s after start
    left = 16.0 - (time.monotonic() - t_start)
    if left > 0:
        time.sleep(left)
    p.check_alive("while registered")
    t.measure("line_registered_events", len(p.events("line_registered")))
    p.stop()
    time.sleep(1.0)  # the un-REGISTER and its 200 (and a possible challenge round) may still be in flight
    pkts = cap.stop()
    stop_kamailio(t, kam)

    msgs = sip_messages(pkts, kport)
    regs = {}  # (Call-ID, CSeq number) -> (time, expiry) of Parley's REGISTERs
    for u, m in msgs:
        if u.dport == kport and sip_first_line(m).startswith("REGISTER "):
            key = (sip_header(m, "Call-ID", "i"), (sip_header(m, "CSeq") or "").split()[0])
            regs[key] = (u.ts, register_expiry(m), "Authorization" in m)
    ok_regs, ok_unregs, responses = [], [], []
    for u, m in msgs:
        if u.sport == kport and sip_first_line(m).startswith("SIP/2.0") and \
                (sip_header(m, "CSeq") or "").endswith("REGISTER"):
            responses.append(sip_first_line(m)[8:11])
            if sip_first_line(m).startswith("SIP/2.0 200"):
                key = (sip_header(m, "Call-ID", "i"), (sip_header(m, "CSeq") or "").split()[0])
                ts, exp, _ = regs.get(key, (u.ts, None, False))
                (ok_unregs if exp == 0 else ok_regs).append(u.ts)
    unreg_requests = [v for v in regs.values() if v[1] == 0]
    t0 = min(v[0] for v in regs.values()) if regs else 0
    t.measure("register_requests", [(round(ts - t0, 2), exp, "auth" if a else "-") for ts, exp, a in
                                    sorted(regs.values())])
    t.measure("register_responses", responses)
    t.measure("successful_registrations_at_s", [round(x - t0, 2) for x in ok_regs])
    t.measure("unregister_requests", len(unreg_requests))
    t.measure("unregister_200", len(ok_unregs))

    check(r.rc == 0 and r.successful == 1,
          f"the call to sip:{USER}@127.0.0.1:{kport} via Kamailio failed: rc={r.rc}\n{r.errors()[-1500:]}")
    streams = rtp_streams(pkts, src_ports=range(p.rtp_lo, p.rtp_hi + 1))
    sound = [stream_speech_packets(s) for s in streams.values()]
    t.measure("echo_speech_packets", sound)
    check(sound and max(sound) >= 10, "the call via Kamailio got no echoed sound from Parley")
    check(len(ok_regs) >= 2, f"expected >= 2 successful REGISTERs (first + refresh), got {len(ok_regs)}")
    check(ok_regs[1] - ok_regs[0] <= 15.0,
          f"the refresh came {ok_regs[1] - ok_regs[0]:.1f} s after the first registration (expires={EXPIRES})")
    check(unreg_requests, "no un-REGISTER (expires 0) from Parley after SIGTERM")
    if not ok_unregs:
        log("note: the un-REGISTER got no 200 OK in the capture")


if __name__ == "__main__":
    Test("kamailio_register", __doc__).run(main)
