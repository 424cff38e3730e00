"""Parley behind NAT (docs/nat.md), in a topology the test builds with network namespaces:

  pub  203.0.113.10  Kamailio (registrar + proxy, no nathelper: it stores Contacts as sent), SIPp callers
                     and a SIPp callee ("far", reached through Kamailio), coturn as a STUN server
   |  bridge br0 in pub: 203.0.113.0/24
  r1   203.0.113.1   MASQUERADE router, UDP conntrack timeouts (normal and _stream) of NAT_TIMEOUT s
   |  192.168.77.0/24
  a    192.168.77.2  Parley A: STUN discovery, keep-alives every 3 s, line alice
  b    192.168.77.3  Parley B: rport discovery only, keep-alives OFF (the control), line bob, SIP port 5062
  r2   203.0.113.2   1:1 NAT (DNAT + SNAT, like a cloud VM); a SIPp in r2 (10.0.3.1) is a LOCAL peer of C
   |  10.0.3.0/24
  c    10.0.3.2      Parley C: sip.external_address = 203.0.113.2 configured, line carol

Checks: every line registers through its NAT with a Contact naming the external address (A from STUN before
the first REGISTER, B after the registrar's received/rport, C as configured, in its Via too); a call through Kamailio to
each line is answered, its SDP names the external address and the caller hears the echo (speech in Parley's
RTP as captured on the public side); C answers a local peer with its private address; A places a call through
Kamailio (POST /api/calls) whose INVITE SDP names the external address; then, after idling longer than the
NAT timeout, a second call reaches A (keep-alives held its binding) and does NOT reach B (the control: no
keep-alives, the binding expired: the test would catch the bug). Last, r1's public address changes: A's
periodic STUN learns it, A re-registers with it and a third call reaches A. Registrations use expires=3600, so no
re-REGISTER refreshes a binding meanwhile. All namespaces are deleted at the end, also on failure."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parleytest import (KAMAILIO_ROUTE_START, Netns, Test, log, rtp_streams, sip_body, sip_first_line,  # noqa: E402
                        sip_header, sip_messages, stream_speech_packets, wait_until)

NAT_TIMEOUT = 8     # s, the router's UDP conntrack timeouts
IDLE = 13           # s of silence between the first and the second inbound calls (> NAT_TIMEOUT)
STUN_INTERVAL = 4   # s, Parley A's sip.stun_interval_s
R1_NEW = "203.0.113.3"  # r1's public address after the change
PUB, R1_PUB, R2_PUB = "203.0.113.10", "203.0.113.1", "203.0.113.2"
A_IP, B_IP, C_IP, R2_PRIV = "192.168.77.2", "192.168.77.3", "10.0.3.2", "10.0.3.1"

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:{pub}:5060
loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
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
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 7200)
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 4000)
modparam("rr", "enable_full_lr", 1)
request_route {{
    xlog("L_INFO", "event=request method=$rm ruri=$ru src=$si:$sp\\n");
{route_start}
    if (is_method("OPTIONS") && $rU == $null) {{ sl_send_reply("200", "Keepalive"); exit; }}
    if (is_method("REGISTER")) {{
        if (!save("location")) {{ sl_reply_error(); }}
        xlog("L_INFO", "event=registered aor=$tu contact=$ct src=$si:$sp\\n");
        exit;
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if ($rU == "far") {{ $du = "sip:{pub}:5080"; t_relay(); exit; }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    xlog("L_INFO", "event=relay method=$rm to=$ru\\n");
    t_relay();
}}
"""


def build_topology(t: Test, n: Netns) -> dict:
    pub, r1, a, b, r2, c = (n.add(x) for x in ("pub", "r1", "a", "b", "r2", "c"))
    n.ex(pub, "ip", "link", "add", "br0", "type", "bridge")
    n.ex(pub, "ip", "addr", "add", f"{PUB}/24", "dev", "br0")
    n.ex(pub, "ip", "link", "set", "br0", "up")
    n.veth(r1, "wan", f"{R1_PUB}/24", pub, "p-r1", None)
    n.veth(r2, "wan", f"{R2_PUB}/24", pub, "p-r2", None)
    n.ex(pub, "ip", "link", "set", "p-r1", "master", "br0")
    n.ex(pub, "ip", "link", "set", "p-r2", "master", "br0")
    # r1: a LAN bridge for A and B, MASQUERADE to the public side
    n.ex(r1, "ip", "link", "add", "lan", "type", "bridge")
    n.ex(r1, "ip", "addr", "add", "192.168.77.1/24", "dev", "lan")
    n.ex(r1, "ip", "link", "set", "lan", "up")
    for ns, ip, port in ((a, A_IP, "r-a"), (b, B_IP, "r-b")):
        n.veth(ns, "eth0", f"{ip}/24", r1, port, None)
        n.ex(r1, "ip", "link", "set", port, "master", "lan")
        n.ex(ns, "ip", "route", "add", "default", "via", "192.168.77.1")
    n.ex(r1, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    n.ex(r1, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
    # Both timeouts: a flow that saw a reply uses the _stream one (120 s by default).
    n.ex(r1, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout={NAT_TIMEOUT}")
    n.ex(r1, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout_stream={NAT_TIMEOUT}")
    # r2: 1:1 NAT for C
    n.veth(c, "eth0", f"{C_IP}/24", r2, "lan", f"{R2_PRIV}/24")
    n.ex(c, "ip", "route", "add", "default", "via", R2_PRIV)
    n.ex(r2, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    n.ex(r2, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-d", R2_PUB, "-j", "DNAT",
         "--to-destination", C_IP)
    n.ex(r2, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-s", C_IP, "-j", "SNAT",
         "--to-source", R2_PUB)
    return {"pub": pub, "r1": r1, "a": a, "b": b, "r2": r2, "c": c}


def start_servers(t: Test, n: Netns, ns: dict):
    kdir = t.dir / "kamailio"
    (kdir / "run").mkdir(parents=True)
    cfg = kdir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(route_start=KAMAILIO_ROUTE_START, pub=PUB))
    t.run_cmd(["kamailio", "-c", "-f", cfg], timeout=30)
    klog = t.dir / "kamailio.log"
    kam = n.spawn(ns["pub"], ["kamailio", "-f", cfg, "-DD", "-E", "-Y", kdir / "run", "-P", kdir / "run" / "pid",
                              "-m", "64", "-M", "8"], "kamailio", log_path=klog, stdout=open(klog, "wb"),
                  stderr=subprocess.STDOUT)
    slog = t.dir / "turnserver.log"
    stun = n.spawn(ns["pub"], ["turnserver", "--stun-only", "-L", PUB, "-p", "3478", "--no-cli", "--no-tls",
                               "--no-dtls", "--log-file", "stdout", "--simple-log", "--pidfile",
                               t.dir / "turnserver.pid"], "turnserver", log_path=slog, stdout=open(slog, "wb"),
                   stderr=subprocess.STDOUT)

    def up():
        for p, what in ((kam, "kamailio"), (stun, "turnserver")):
            if p.poll() is not None:
                raise AssertionError(f"{what} exited with {p.returncode}")
        r = n.ex(ns["pub"], "ss", "-lunH")
        return f"{PUB}:5060" in r.stdout.decode() and f"{PUB}:3478" in r.stdout.decode()
    wait_until(up, 15, what="kamailio and turnserver to listen in the public namespace")
    time.sleep(0.5)  # kamailio forks its SIP workers after binding


def parley_in(t: Test, n: Netns, ns: str, name: str, sip: dict, rtp: str, line: dict):
    p = t.parley(name, start=False, sip={"listen": "0.0.0.0:5060", **sip},
                 media={"rtp_ports": rtp, "address": ""}, line=[{"registrar": f"sip:{PUB}:5060", "password": "x",
                                                                  "expires": 3600, **line}],
                 http={"listen": "127.0.0.1:8088"})
    p.netns = ns
    return p


def sdp_c(msg: str) -> str | None:
    m = re.search(r"^c=IN IP4 (\S+)", sip_body(msg), re.M)
    return m.group(1) if m else None


def main(t: Test):
    n = Netns(t)
    ns = build_topology(t, n)
    start_servers(t, n, ns)
    t.speech_ulaw("hello, calling parley behind a nat router", seconds=1.0)
    cap = n.capture(ns["pub"], "br0", "udp", "pub")

    a = parley_in(t, n, ns["a"], "parley-a", {"stun_server": f"{PUB}:3478", "stun_interval_s": STUN_INTERVAL},
                  "30000-30099", {"name": "a", "user": "alice", "keepalive_s": 3})
    b = parley_in(t, n, ns["b"], "parley-b", {"listen": "0.0.0.0:5062"}, "30100-30199",
                  {"name": "b", "user": "bob", "keepalive_s": 0})
    c = parley_in(t, n, ns["c"], "parley-c", {"external_address": R2_PUB}, "30200-30299",
                  {"name": "c", "user": "carol", "keepalive_s": 3})
    for p in (a, b, c):
        p.start()
    for p in (a, b, c):
        p.wait_event("line_registered", timeout=10)
    t.measure("stun_mapped", [e["external"] for e in a.events("nat_stun_mapped")])
    t.measure("b_rport_mapped", [e["external"] for e in b.events("nat_rport_mapped")])
    t.expect(any(e["external"].startswith(R1_PUB + ":") for e in a.events("nat_stun_mapped")),
             "Parley A logged no event=nat_stun_mapped with the router's address")
    t.expect(b.events("nat_rport_mapped", external=f"{R1_PUB}:5062"),
             "Parley B logged no event=nat_rport_mapped external=203.0.113.1:5062 (rport discovery)")

    # --- first calls: through Kamailio to each line; C also from a peer on its local network ------------
    far = n.sipp_start(ns["pub"], PUB, 5080, "uas_answer_bye.xml", None, name="far-uas", duration_ms=2000,
                       timeout=25, media_port=16100)
    calls1 = {
        "a": n.sipp_start(ns["pub"], PUB, 5071, "uac_echo.xml", f"{PUB}:5060", name="call1-a", service="alice",
                          duration_ms=2500, media_port=16000),
        "b": n.sipp_start(ns["pub"], PUB, 5072, "uac_echo.xml", f"{PUB}:5060", name="call1-b", service="bob",
                          duration_ms=2500, media_port=16010),
        "c": n.sipp_start(ns["pub"], PUB, 5073, "uac_echo.xml", f"{PUB}:5060", name="call1-c", service="carol",
                          duration_ms=2500, media_port=16020),
        "c_local": n.sipp_start(ns["r2"], R2_PRIV, 5074, "uac_echo.xml", f"{C_IP}:5060", name="call1-c-local",
                                service="carol", duration_ms=1500, media_port=16030),
    }
    # A places a call through Kamailio, with its own API (inside its namespace)
    token = Path(a.cfg["http"]["token_file"]).read_text().strip()
    r = n.ex(ns["a"], "curl", "-sS", "-m", "5", "-H", f"Authorization: Bearer {token}", "-H",
             "Content-Type: application/json", "-d", json.dumps({"to": f"sip:far@{PUB}:5060", "line": "a"}),
             "http://127.0.0.1:8088/api/calls")
    t.measure("api_originate", r.stdout.decode().strip())
    res1 = {k: s.wait() for k, s in calls1.items()}
    far_r = far.wait()
    for k, res in res1.items():
        t.expect(res.rc == 0 and res.successful == 1, f"first call to {k}: sipp rc={res.rc}\n{res.errors()[-800:]}")
    t.expect(far_r.rc == 0 and far_r.successful == 1,
             f"A's outbound call through Kamailio to far: sipp rc={far_r.rc}\n{far_r.errors()[-800:]}")
    local_msgs = Path(calls1["c_local"].files["msg"]).read_text(errors="replace")
    m = re.search(r"SIP/2.0 200 OK.*?\r?\n\r?\n.*?c=IN IP4 (\S+)", local_msgs, re.S)
    t.measure("c_local_peer_sdp_c", m.group(1) if m else None)
    t.expect(m and m.group(1) == C_IP, f"C's answer to a local_networks peer must name {C_IP}, got "
                                       f"{m.group(1) if m else None}")
    m = re.search(r"SIP/2.0 200 OK.*?^Contact:\s*(.*?)\r?$", local_msgs, re.S | re.M)
    t.expect(m and C_IP in m.group(1), f"C's Contact to a local peer: {m.group(1) if m else None}")

    # --- idle past the NAT timeout, then second calls: A (keep-alives) gets it, B (none) must not ------
    t1 = time.monotonic()
    log(f"idling {IDLE} s (router UDP timeout {NAT_TIMEOUT} s)")
    time.sleep(IDLE)
    b_calls_before = len(b.events("call_incoming"))
    calls2 = {
        "a": n.sipp_start(ns["pub"], PUB, 5075, "uac_echo.xml", f"{PUB}:5060", name="call2-a", service="alice",
                          duration_ms=1500, media_port=16040, timeout=12),
        "b": n.sipp_start(ns["pub"], PUB, 5076, "uac_echo.xml", f"{PUB}:5060", name="call2-b", service="bob",
                          duration_ms=1500, media_port=16050, timeout=12),
    }
    res2 = {k: s.wait() for k, s in calls2.items()}
    t.measure("idle_s", round(calls2["a"].t0 - t1, 1))
    t.expect(res2["a"].rc == 0 and res2["a"].successful == 1,
             f"the second call to A (keep-alives on) after {IDLE} s idle failed: rc={res2['a'].rc}\n"
             f"{res2['a'].errors()[-800:]}")
    t.expect(res2["b"].rc != 0 and len(b.events("call_incoming")) == b_calls_before,
             f"control: the second call to B (keep-alives off) reached it after {IDLE} s idle: the NAT "
             f"binding did not expire, so this test could not tell keep-alives work")
    # --- the router's public address changes: A's periodic STUN notices, A re-registers, calls arrive -----
    n.ex(ns["r1"], "ip", "addr", "add", f"{R1_NEW}/24", "dev", "wan")
    n.ex(ns["r1"], "iptables", "-t", "nat", "-R", "POSTROUTING", "1", "-o", "wan", "-j", "SNAT",
         "--to-source", R1_NEW)
    n.ex(ns["r1"], "conntrack", "-F")  # existing flows would keep the old mapping
    t_change = time.monotonic()
    ev = a.wait_event("line_registered", count=2, timeout=3 * STUN_INTERVAL + 5)
    t.measure("a_reregistered_after_s", round(time.monotonic() - t_change, 1))
    t.expect(a.events("nat_contact_changed") and f"@{R1_NEW}:5060" in ev[-1]["_line"],
             f"A did not re-register with the new public address {R1_NEW}: {ev[-1]['_line']}")
    call3 = n.sipp_start(ns["pub"], PUB, 5077, "uac_echo.xml", f"{PUB}:5060", name="call3-a", service="alice",
                         duration_ms=1000, media_port=16060, timeout=12).wait()
    t.expect(call3.rc == 0 and call3.successful == 1,
             f"a call to A after its public address changed failed: rc={call3.rc}\n{call3.errors()[-800:]}")
    for p in (a, b, c):
        p.check_alive("after the calls")
    t.measure("keepalive_events", [e["_line"].split("event=")[1] for e in a.events("line_keepalive")])
    t.measure("media_addresses_a", [e["_line"].split("event=")[1] for e in a.events("call_media_addresses")])

    # one-way audio must be diagnosable from the log: each call names its local, advertised and peer addresses
    ma = a.events("call_media_addresses")
    t.expect(ma and all(e["local_route"] == A_IP and e["advertised"].split(":")[0] in (R1_PUB, R1_NEW)
                        and e["peer"].startswith(PUB + ":") and e["nat"] == "external" for e in ma),
             f"A's event=call_media_addresses lines: {[e['_line'] for e in ma]}")
    mc = c.events("call_media_addresses", nat="local_peer")
    t.expect(mc and mc[0]["advertised"].startswith(C_IP + ":") and mc[0]["peer"].startswith(R2_PRIV + ":"),
             f"C's event=call_media_addresses for the LAN peer: {[e['_line'] for e in mc]}")
    pkts = cap.stop()
    for p in (a, b, c):
        p.stop()

    # --- what the public side saw ----------------------------------------------------------------------
    msgs = sip_messages(pkts)
    regs = [(u, m_) for u, m_ in msgs if sip_first_line(m_).startswith("REGISTER ")]
    contacts = {}
    for u, m_ in regs:
        user = re.search(r"sip:(\w+)@", sip_header(m_, "To", "t") or "").group(1)
        contacts.setdefault(user, []).append(sip_header(m_, "Contact", "m"))
    t.measure("register_contacts", contacts)
    t.expect(contacts.get("alice") and f"@{R1_PUB}:5060" in contacts["alice"][0]
             and all(f"@{R1_PUB}:5060" in x or f"@{R1_NEW}:5060" in x for x in contacts["alice"]),
             f"A's REGISTERs (STUN before the first one) must carry {R1_PUB}:5060, then {R1_NEW}:5060: "
             f"{contacts.get('alice')}")
    bob = [x for x in contacts.get("bob", []) if "expires=0" not in x]
    t.expect(bob and f"@{R1_PUB}:5062" in bob[-1], f"B's last REGISTER must carry {R1_PUB}:5062: {bob}")
    t.expect(contacts.get("carol") and all(f"@{R2_PUB}:5060" in x for x in contacts["carol"]),
             f"C's REGISTERs must carry the configured {R2_PUB}: {contacts.get('carol')}")
    c_vias = sorted({(sip_header(m_, "Via", "v") or "").split(";")[0] for u, m_ in regs if u.src == R2_PUB})
    t.measure("c_register_via", c_vias)
    t.expect(c_vias == [f"SIP/2.0/UDP {R2_PUB}"], f"C's REGISTER Via must name the configured {R2_PUB}: {c_vias}")
    # SDP of Parley's answers, as each SIPp caller received them (its message trace)
    answers = {}
    for key, sp in list(calls1.items()) + [("a2", calls2["a"])]:
        trace = Path(sp.files["msg"]).read_text(errors="replace")
        m = re.search(r"SIP/2.0 200 OK.*?^c=IN IP4 (\S+)", trace, re.S | re.M)
        answers[key] = m.group(1) if m else None
    t.measure("answer_sdp_c", answers)
    for key, want in (("a", R1_PUB), ("b", R1_PUB), ("c", R2_PUB), ("a2", R1_PUB)):
        t.expect(answers.get(key) == want, f"{key}: Parley's SDP answer must name {want}, got {answers.get(key)}")
    offers = [sdp_c(m_) for u, m_ in msgs if sip_first_line(m_).startswith("INVITE sip:far@") and u.src == R1_PUB]
    t.measure("a_outbound_offer_c", offers)
    t.expect(offers and offers[0] == R1_PUB, f"A's outbound INVITE SDP must name {R1_PUB}: {offers}")
    # The echo: speech in the RTP each Parley sent to its caller (seen leaving its NAT)
    for who, src, lo, hi, mport in (("A", R1_PUB, 30000, 30099, 16000), ("B", R1_PUB, 30100, 30199, 16010),
                                    ("C", R2_PUB, 30200, 30299, 16020), ("A#2", R1_PUB, 30000, 30099, 16040)):
        sent = [u for u in pkts if u.src == src and u.dst == PUB and u.dport == mport]
        streams = rtp_streams(sent, src_ports=range(lo, hi + 1))
        speech = max((stream_speech_packets(s) for s in streams.values()), default=0)
        t.measure(f"echo_speech_packets_{who}", speech)
        t.expect(speech >= 10, f"the caller of {who} heard no echo through the NAT ({speech} speech packets)")
    far_rtp = [u for u in pkts if u.src == R1_PUB and u.dst == PUB and u.dport == 16100]
    t.measure("a_outbound_rtp_packets", len(far_rtp))
    t.expect(len(far_rtp) >= 25, f"A's outbound call: {len(far_rtp)} RTP packets reached the callee")


if __name__ == "__main__":
    Test("nat", __doc__).run(main)
