"""parleytest: a small harness for Parley's black-box integration tests (stdlib + numpy only).

Each test script does:

    from parleytest import Test, check
    def main(t):
        p = t.parley(call={"handler": "echo"})      # writes the TOML, starts `parley run`, waits for ready
        r = t.sipp("uac_basic.xml", p.sip_addr)     # runs a scenario from tests/sip/scenarios
        check(r.rc == 0, "sipp failed")
        p.stop()                                    # SIGTERM, must exit 0 within 10 s
    Test("name", __doc__).run(main)

What the harness gives:
  * a temp work dir per test (kept on failure or with --keep),
  * free loopback ports: the SIP port, and a private even-aligned RTP port range per process, chosen
    below the kernel's ephemeral range so parallel tests do not collide,
  * processes (parley, sipp, tshark, kamailio, baresip) started in their own session and always killed
    at the end, every wait bounded,
  * a classic pcap / pcapng reader, UDP/RTP/SIP extraction, G.711 decoding, speech detection,
  * /proc/PID stats (fds, threads, VmRSS),
  * on failure the tail of every log it knows about (parley, sipp errors, kamailio, baresip).

Run a test alone: /usr/bin/python3 tests/integration/test_x.py --parley build/bin/parley [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "sip" / "scenarios"
DATA = REPO / "tests" / "data" / "integration"


class TestFailure(Exception):
    """A check failed: the test reports FAIL and exits 1."""


def check(cond, msg: str):
    if not cond:
        raise TestFailure(msg)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Polls pred() until it returns a truthy value (returned) or `timeout` seconds pass (TestFailure)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def wait_http(base: str, timeout: float = 15.0):
    """Waits until Parley's HTTP server at `base` (http://host:port) answers GET /healthz with 200."""
    import urllib.request

    def healthy():
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(healthy, timeout, what=f"GET {base}/healthz")


# ----------------------------------------------------------------------------------------------------
# Ports

_taken: set[int] = set()


def _udp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _tcp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(tcp: bool = True) -> int:
    """A loopback port free for UDP (and TCP when tcp=True), from the kernel's ephemeral range."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port in _taken or (tcp and not _tcp_free(port)):
            continue
        _taken.add(port)
        return port
    raise TestFailure("no free loopback port found")


def free_port_range(n: int, lo: int = 20000, hi: int = 32700) -> tuple[int, int]:
    """An even-aligned block [first, first+n-1] of UDP ports (n even) that are all free right now.

    Taken below the ephemeral range (32768+) so that ports the kernel hands out (sipp, SIP sockets) never
    land inside it; the random start makes collisions between tests run in parallel unlikely."""
    n += n % 2
    for _ in range(500):
        first = random.randrange(lo, hi - n) & ~1
        ports = range(first, first + n)
        if any(p in _taken for p in ports):
            continue
        if all(_udp_free(p) for p in ports):
            _taken.update(ports)
            return first, first + n - 1
    raise TestFailure(f"no free block of {n} UDP ports found")


# ----------------------------------------------------------------------------------------------------
# TOML

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def toml_dumps(cfg: dict) -> str:
    """Sections are dicts; a list of dicts is an array of tables ([[line]])."""
    out = []
    for sec, body in cfg.items():
        if isinstance(body, dict):
            out.append(f"[{sec}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in body.items() if v is not None]
            out.append("")
        elif isinstance(body, list):
            for item in body:
                out.append(f"[[{sec}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None]
                out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------
# Processes

def proc_stats(pid: int) -> dict:
    """Open fds, threads and VmRSS (KiB) of a live process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            st[k] = v.strip()
    return {"fds": fds, "threads": int(st["Threads"]), "rss_kib": int(st["VmRSS"].split()[0])}


def parse_kv(line: str) -> dict:
    """key=value pairs of a log line (values may be "quoted")."""
    d = {}
    for m in re.finditer(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])  # Parley escapes " and \ inside quoted values
        d[m.group(1)] = v
    return d


def tail(path, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 200_000))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


class Parley:
    """One `parley run` process with its own config, ports and log file."""

    def __init__(self, t: "Test", name: str, cfg: dict, sets: list[str]):
        self.t = t
        self.name = name
        self.cfg = cfg
        self.sets = sets
        self.config_path = t.dir / f"{name}.toml"
        self.log_path = t.dir / f"{name}.log"
        self.config_path.write_text(toml_dumps(cfg))
        host, port = cfg["sip"]["listen"].rsplit(":", 1)
        self.sip_host, self.sip_port = host, int(port)
        lo, hi = cfg["media"]["rtp_ports"].split("-")
        self.rtp_lo, self.rtp_hi = int(lo), int(hi)
        self.proc: subprocess.Popen | None = None
        self.exit_code = None

    @property
    def sip_addr(self) -> str:
        return f"{self.sip_host}:{self.sip_port}"

    @property
    def http_base(self) -> str:
        return "http://" + self.cfg["http"]["listen"]

    def api_get(self, path: str, auth: bool = True) -> tuple[int, bytes]:
        """GET `path` on this Parley's HTTP server (the token from its config or token_file) -> (status, body)."""
        import urllib.error
        import urllib.request
        headers = {}
        if auth:
            http = self.cfg["http"]
            token = http.get("token") or Path(http["token_file"]).read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        try:
            with urllib.request.urlopen(urllib.request.Request(self.http_base + path, headers=headers), timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, ready_timeout: float = 20.0):
        cmd = [str(self.t.parley_bin), "run", "--config", str(self.config_path)]
        for s in self.sets:
            cmd += ["--set", s]
        if getattr(self, "netns", None):  # inside a network namespace of the test (see Netns)
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        log(f"starting {' '.join(cmd)}")
        self._logf = open(self.log_path, "ab")
        self.proc = self.t.spawn(cmd, stdout=self._logf, stderr=subprocess.STDOUT, name=self.name,
                                 log_path=self.log_path, kill_group=False)
        self.started_at = time.monotonic()

        def ready():
            if self.proc.poll() is not None:
                raise TestFailure(f"{self.name} exited with {self.proc.returncode} before event=ready")
            return re.search(r"\bevent=ready\b", self.text())
        wait_until(ready, ready_timeout, what=f"{self.name} event=ready")
        log(f"{self.name} ready (pid {self.pid}, sip {self.sip_addr}, rtp {self.rtp_lo}-{self.rtp_hi})")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def events(self, name: str, **match) -> list[dict]:
        """Parsed log lines with event=name (and every key=value in match)."""
        out = []
        for line in self.text().splitlines():
            if f"event={name}" not in line:
                continue
            kv = parse_kv(line)
            if kv.get("event") != name:
                continue
            if all(kv.get(k) == str(v) for k, v in match.items()):
                kv["_line"] = line
                out.append(kv)
        return out

    def wait_event(self, name: str, count: int = 1, timeout: float = 10.0, **match) -> list[dict]:
        def got():
            if not self.alive():
                raise TestFailure(f"{self.name} died (exit {self.proc.returncode}) waiting for event={name}")
            ev = self.events(name, **match)
            return ev if len(ev) >= count else None
        return wait_until(got, timeout, what=f"{count} x event={name} {match or ''} in {self.name}'s log")

    def stats(self) -> dict:
        check(self.alive(), f"{self.name} is not running")
        return proc_stats(self.pid)

    def check_alive(self, when: str = ""):
        check(self.alive(), f"{self.name} died {when}: exit code {self.proc.returncode if self.proc else None}")

    def stop(self, timeout: float = 10.0, expect_code: int | None = 0) -> int:
        """SIGTERM; the process must exit (with expect_code) within `timeout` s, else SIGKILL and fail."""
        check(self.proc is not None, "parley never started")
        if self.proc.poll() is not None:
            raise TestFailure(f"{self.name} already exited with {self.proc.returncode} before SIGTERM")
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TestFailure(f"{self.name} did not exit within {timeout} s of SIGTERM (killed)")
        dt = time.monotonic() - t0
        self.exit_code = code
        log(f"{self.name} exited with {code} {dt:.2f} s after SIGTERM")
        if expect_code is not None:
            check(code == expect_code, f"{self.name} exit code after SIGTERM: expected {expect_code}, got {code}")
        return code


@dataclass
class SippResult:
    rc: int
    elapsed: float
    stat_file: Path
    err_file: Path
    msg_file: Path
    stats: dict = field(default_factory=dict)

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", -1))

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", -1))

    def errors(self) -> str:
        try:
            return self.err_file.read_text(errors="replace")
        except OSError:
            return ""

    def messages(self) -> str:
        try:
            return self.msg_file.read_text(errors="replace")
        except OSError:
            return ""


def _read_sipp_stats(path: Path) -> dict:
    try:
        rows = [r for r in path.read_text(errors="replace").splitlines() if r.strip()]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    head = rows[0].split(";")
    last = rows[-1].split(";")
    return dict(zip(head, last))


class Sipp:
    """A sipp process started in the background (see Test.sipp for the arguments)."""

    def __init__(self, t: "Test", cmd: list[str], name: str, timeout: float, files: dict):
        self.t = t
        self.name = name
        self.timeout = timeout
        self.files = files
        self.t0 = time.monotonic()
        self._out = open(files["out"], "wb")
        self.proc = t.spawn(cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            name=name, cwd=t.dir)

    def wait(self) -> SippResult:
        try:
            rc = self.proc.wait(self.timeout + 20)
        except subprocess.TimeoutExpired:
            self.t.kill(self.proc)
            raise TestFailure(f"{self.name} did not exit within {self.timeout + 20:.0f} s (killed)")
        r = SippResult(rc, time.monotonic() - self.t0, self.files["stat"], self.files["err"],
                       self.files["msg"], _read_sipp_stats(self.files["stat"]))
        log(f"{self.name}: rc={rc} successful={r.successful} failed={r.failed} in {r.elapsed:.1f} s")
        if rc != 0:
            self.t.extra_logs.append(self.files["err"])
        return r


class Capture:
    """tshark on lo writing a classic pcap; stop() with SIGINT and wait until the file is complete."""

    def __init__(self, t: "Test", bpf: str, name: str = "capture"):
        self.t = t
        self.bpf = bpf
        self.path = t.dir / f"{name}.pcap"
        self.err_path = t.dir / f"{name}.tshark.log"
        self.name = name
        self.proc = None
        self.iface, self.prefix = "lo", []  # Netns.capture: another interface, inside a namespace

    def start(self, timeout: float = 15.0):
        cmd = self.prefix + ["tshark", "-i", self.iface, "-f", self.bpf, "-w", str(self.path), "-F", "pcap", "-q"]
        self._err = open(self.err_path, "wb")
        self.proc = self.t.spawn(cmd, stdout=subprocess.DEVNULL, stderr=self._err, name=self.name)

        def capturing():
            if self.proc.poll() is not None:
                raise TestFailure(f"tshark exited with {self.proc.returncode}: {tail(self.err_path, 5)}")
            return "Capturing on" in self.err_path.read_text(errors="replace")
        wait_until(capturing, timeout, what="tshark to start capturing")
        time.sleep(0.5)  # dumpcap has the socket open before it prints, but be safe
        log(f"tshark capturing on {self.iface}: {self.bpf}")
        return self

    def stop(self, timeout: float = 15.0) -> list["Udp"]:
        time.sleep(0.3)  # let the last packets in flight reach the capture
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.t.kill(self.proc)
                raise TestFailure(f"tshark did not stop within {timeout} s of SIGINT")
        self.packets = read_pcap_udp(self.path)
        log(f"capture {self.path.name}: {len(self.packets)} UDP datagrams")
        return self.packets


# ----------------------------------------------------------------------------------------------------
# pcap / UDP / RTP / SIP

@dataclass
class Udp:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    data: bytes


def _l3_offset(linktype: int, frame: bytes):
    """Offset of the IPv4 header in a frame, or None."""
    if linktype == 1:  # Ethernet
        off, etype = 14, struct.unpack("!H", frame[12:14])[0]
        while etype == 0x8100 and len(frame) >= off + 4:
            etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return off if etype == 0x0800 else None
    if linktype == 113:  # Linux cooked
        return 16 if struct.unpack("!H", frame[14:16])[0] == 0x0800 else None
    if linktype == 276:  # Linux cooked v2
        return 20 if struct.unpack("!H", frame[0:2])[0] == 0x0800 else None
    if linktype == 0:  # BSD loopback
        return 4
    if linktype in (101, 228):  # raw IP / raw IPv4
        return 0
    return None


def _udp_from_frame(linktype: int, ts: float, frame: bytes):
    off = _l3_offset(linktype, frame)
    if off is None or len(frame) < off + 20:
        return None
    vihl = frame[off]
    if vihl >> 4 != 4:
        return None
    ihl = (vihl & 15) * 4
    total = struct.unpack("!H", frame[off + 2:off + 4])[0]
    frag = struct.unpack("!H", frame[off + 6:off + 8])[0]
    if frame[off + 9] != 17 or (frag & 0x1FFF) or (frag & 0x2000):
        return None  # not UDP, or a fragment (loopback MTU is 64 KiB: never seen here)
    src = socket.inet_ntoa(frame[off + 12:off + 16])
    dst = socket.inet_ntoa(frame[off + 16:off + 20])
    u = off + ihl
    sport, dport, ulen = struct.unpack("!HHH", frame[u:u + 6])
    end = min(len(frame), off + total, u + ulen)
    return Udp(ts, src, sport, dst, dport, bytes(frame[u + 8:end]))


def read_pcap_udp(path) -> list[Udp]:
    """UDP/IPv4 datagrams of a classic pcap (µs or ns) or pcapng file, in capture order."""
    data = Path(path).read_bytes()
    out = []
    if len(data) < 24:
        raise TestFailure(f"{path}: not a complete capture file ({len(data)} bytes)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        le = magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
        e = "<" if le else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
        pos = 24
        while pos + 16 <= len(data):
            sec, frac, incl, _orig = struct.unpack(e + "IIII", data[pos:pos + 16])
            pos += 16
            if pos + incl > len(data):
                break  # truncated last record
            ts = sec + frac / (1e9 if nano else 1e6)
            u = _udp_from_frame(linktype, ts, data[pos:pos + incl])
            if u:
                out.append(u)
            pos += incl
        return out
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng (only SHB, IDB, EPB, SPB matter)
        pos, e, ifaces = 0, "<", []
        while pos + 12 <= len(data):
            btype = struct.unpack(e + "I", data[pos:pos + 4])[0]
            if btype == 0x0A0D0D0A:
                e = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                ifaces = []
            blen = struct.unpack(e + "I", data[pos + 4:pos + 8])[0]
            if blen < 12 or pos + blen > len(data):
                break
            body = data[pos + 8:pos + blen - 4]
            if btype == 1:
                lt = struct.unpack(e + "H", body[0:2])[0]
                res = 1e-6
                o = 8
                while o + 4 <= len(body):
                    code, olen = struct.unpack(e + "HH", body[o:o + 4])
                    if code == 0:
                        break
                    if code == 9 and olen >= 1:
                        v = body[o + 4]
                        res = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                    o += 4 + ((olen + 3) & ~3)
                ifaces.append((lt, res))
            elif btype == 6:
                iid, hi, lo, cap = struct.unpack(e + "IIII", body[0:16])
                lt, res = ifaces[iid] if iid < len(ifaces) else (1, 1e-6)
                u = _udp_from_frame(lt, ((hi << 32) | lo) * res, body[20:20 + cap])
                if u:
                    out.append(u)
            elif btype == 3 and ifaces:
                u = _udp_from_frame(ifaces[0][0], 0.0, body[4:])
                if u:
                    out.append(u)
            pos += blen
        return out
    raise TestFailure(f"{path}: unknown capture file format (magic {magic.hex()})")


SIP_START = re.compile(rb"^(INVITE|ACK|BYE|CANCEL|REGISTER|OPTIONS|INFO|NOTIFY|REFER|UPDATE|PRACK|SUBSCRIBE|"
                       rb"MESSAGE|PUBLISH) [^ ]+ SIP/2\.0\r\n|^SIP/2\.0 \d{3} ")


def read_pcap_l4(path) -> list[tuple[float, str, int, int, bytes]]:
    """(ts, proto 'udp'|'tcp', sport, dport, payload) of the IPv4 UDP/TCP packets of a classic little-endian
    pcap (what Capture writes), for checks on TCP/TLS traffic that read_pcap_udp does not see."""
    data = Path(path).read_bytes()
    check(len(data) >= 24, f"{path}: not a complete capture")
    magic = data[:4]
    check(magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), f"{path}: expected a little-endian classic pcap")
    nano = magic == b"\x4d\x3c\xb2\xa1"
    linktype = struct.unpack("<I", data[20:24])[0] & 0x0FFFFFFF
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack("<IIII", data[pos:pos + 16])
        pos += 16
        frame = data[pos:pos + incl]
        pos += incl
        off = _l3_offset(linktype, frame)
        if off is None or len(frame) < off + 20 or frame[off] >> 4 != 4:
            continue
        ihl = (frame[off] & 15) * 4
        total = struct.unpack("!H", frame[off + 2:off + 4])[0]
        proto = frame[off + 9]
        l4 = off + ihl
        end = min(len(frame), off + total)
        ts = sec + frac / (1e9 if nano else 1e6)
        if proto == 17:
            sport, dport = struct.unpack("!HH", frame[l4:l4 + 4])
            out.append((ts, "udp", sport, dport, bytes(frame[l4 + 8:end])))
        elif proto == 6:
            sport, dport = struct.unpack("!HH", frame[l4:l4 + 4])
            doff = (frame[l4 + 12] >> 4) * 4
            out.append((ts, "tcp", sport, dport, bytes(frame[l4 + doff:end])))
    return out


@dataclass
class Rtp:
    ts: float  # capture time
    src: str
    sport: int
    dst: str
    dport: int
    pt: int
    marker: bool
    seq: int
    rtp_ts: int
    ssrc: int
    payload: bytes


def parse_rtp(u: Udp):
    """An RTP packet (not RTCP, not STUN) or None."""
    d = u.data
    if len(d) < 12 or d[0] >> 6 != 2:
        return None
    pt = d[1] & 0x7F
    if 72 <= pt <= 76:  # RTCP 200-204 seen through the RTP header layout
        return None
    cc = d[0] & 15
    off = 12 + 4 * cc
    if d[0] & 0x10:  # header extension
        if len(d) < off + 4:
            return None
        off += 4 + 4 * struct.unpack("!H", d[off + 2:off + 4])[0]
    end = len(d)
    if d[0] & 0x20 and end > off:  # padding
        end -= d[-1]
    if end < off:
        return None
    seq, rts, ssrc = struct.unpack("!HII", d[2:12])
    return Rtp(u.ts, u.src, u.sport, u.dst, u.dport, pt, bool(d[1] & 0x80), seq, rts, ssrc, d[off:end])


def rtp_packets(packets: list[Udp], src_ports=None, dst_ports=None) -> list[Rtp]:
    out = []
    for u in packets:
        if src_ports is not None and u.sport not in src_ports:
            continue
        if dst_ports is not None and u.dport not in dst_ports:
            continue
        r = parse_rtp(u)
        if r:
            out.append(r)
    return out


def rtp_streams(packets: list[Udp], src_ports=None, dst_ports=None) -> dict[int, list[Rtp]]:
    """RTP packets grouped by SSRC, each list in capture order."""
    streams: dict[int, list[Rtp]] = {}
    for r in rtp_packets(packets, src_ports, dst_ports):
        streams.setdefault(r.ssrc, []).append(r)
    return streams


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exp = (u >> 4) & 7
    mant = u & 15
    mag = (((mant << 3) + 0x84) << exp) - 0x84
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exp = (a >> 4) & 7
    mant = a & 15
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(sign != 0, mag, -mag).astype(np.int16)


ULAW = _ulaw_table()
ALAW = _alaw_table()


def g711_decode(payload: bytes, pt: int) -> np.ndarray:
    b = np.frombuffer(payload, dtype=np.uint8)
    if pt == 0:
        return ULAW[b]
    if pt == 8:
        return ALAW[b]
    raise TestFailure(f"cannot decode payload type {pt} (only PCMU/PCMA)")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) if len(x) else 0.0


def stream_speech_packets(stream: list[Rtp], threshold: float = 300.0) -> int:
    """How many packets of a G.711 stream carry sound (RMS above `threshold` of 32768), not silence."""
    return sum(1 for r in stream if r.pt in (0, 8) and rms(g711_decode(r.payload, r.pt)) > threshold)


def stream_audio(stream: list[Rtp]) -> np.ndarray:
    """Decoded G.711 audio of a stream, packets in RTP timestamp order, gaps filled with zeros."""
    pkts = sorted((r for r in stream if r.pt in (0, 8)), key=lambda r: r.rtp_ts)
    if not pkts:
        return np.zeros(0, np.int16)
    t0 = pkts[0].rtp_ts
    end = max((r.rtp_ts - t0) & 0xFFFFFFFF for r in pkts) + max(len(r.payload) for r in pkts)
    out = np.zeros(end, np.int16)
    for r in pkts:
        o = (r.rtp_ts - t0) & 0xFFFFFFFF
        pcm = g711_decode(r.payload, r.pt)
        out[o:o + len(pcm)] = pcm
    return out


def sip_messages(packets: list[Udp], port: int | None = None) -> list[tuple[Udp, str]]:
    """SIP datagrams (to or from `port`) as (datagram, text)."""
    out = []
    for u in packets:
        if port is not None and port not in (u.sport, u.dport):
            continue
        if not u.data[:20].strip():
            continue
        text = u.data.decode("utf-8", "replace")
        first = text.split("\r\n", 1)[0]
        if first.startswith("SIP/2.0 ") or re.match(r"^[A-Z]+ \S+ SIP/2\.0$", first):
            out.append((u, text))
    return out


def sip_first_line(text: str) -> str:
    return text.split("\r\n", 1)[0]


def sip_header(text: str, name: str, compact: str | None = None) -> str | None:
    head = text.split("\r\n\r\n", 1)[0]
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == name.lower() or (compact and k == compact.lower()):
            return v.strip()
    return None


def sip_body(text: str) -> str:
    return text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""


# ----------------------------------------------------------------------------------------------------
# Audio files

def speech_wav(t: "Test", text: str, path: Path, rate: int = 8000, seconds: float | None = None,
               pad: tuple[float, float] = (0.0, 0.0), gain_db: float | None = None) -> Path:
    """espeak-ng speech as a mono 16-bit WAV at `rate`, optionally cut to `seconds` and padded with silence."""
    raw = path.with_suffix(".espeak.wav")
    t.run_cmd(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text])
    cmd = ["sox", "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(path)]
    if gain_db is not None:
        cmd += ["gain", "-n", str(gain_db)]
    if seconds is not None:
        cmd += ["trim", "0", str(seconds)]
    if pad != (0.0, 0.0):
        cmd += ["pad", str(pad[0]), str(pad[1])]
    t.run_cmd(cmd)
    return path


def wav_to_ulaw(t: "Test", wav: Path, out: Path) -> Path:
    """Raw 8 kHz µ-law (what sipp's rtp_stream="file,loops,0" sends byte for byte)."""
    t.run_cmd(["sox", "-D", str(wav), "-t", "raw", "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(out)])
    return out


def read_wav(path) -> tuple[int, np.ndarray]:
    """(rate, samples as float64 in [-1, 1], first channel) of a PCM WAV."""
    with wave.open(str(path), "rb") as w:
        rate, ch, sw, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    if sw == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    elif sw == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128.0
    elif sw == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0
    else:
        raise TestFailure(f"{path}: unsupported sample width {sw}")
    return rate, x.reshape(-1, ch)[:, 0] if ch > 1 else x


def envelope(x: np.ndarray, rate: int, frame_ms: float = 10.0) -> np.ndarray:
    """RMS per frame (default 10 ms)."""
    n = max(1, int(rate * frame_ms / 1000))
    m = len(x) // n
    return np.sqrt(np.mean(np.square(x[: m * n].reshape(m, n)), axis=1)) if m else np.zeros(0)


def best_lag(ref: np.ndarray, sig: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag L in [0, max_lag] maximising the normalised cross-correlation of ref[n] with sig[n + L].

    Both are mean-removed over the overlapping part; returns (L, correlation in [-1, 1])."""
    best = (0, -2.0)
    for lag in range(0, max_lag + 1):
        n = min(len(ref), len(sig) - lag)
        if n < 10:
            break
        a = ref[:n] - ref[:n].mean()
        b = sig[lag:lag + n] - sig[lag:lag + n].mean()
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        c = float(np.dot(a, b) / den) if den > 0 else 0.0
        if c > best[1]:
            best = (lag, c)
    return best


def md5hex(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# The conversation handler (call.handler = "conversation") with the generated random-weight test models

TEST_STT_MODEL = REPO / "build" / "testmodels" / "whisper-tiny-random.bin"
TEST_VAD_MODEL = REPO / "third_party" / "models" / "silero-v6.2.0-ggml.bin"
TEST_LLM_MODEL = REPO / "build" / "testmodels" / "llama-tiny-random.gguf"

TURN_TIMES = ("eot_ms", "stt_final_ms", "stt_compute_ms", "llm_first_token_ms", "first_sentence_ms",
              "tts_first_audio_ms", "tts_compute_ms", "first_rtp_ms", "v2v_ms", "overhead_ms")


BABBLE_STT = {"fit_window": False}  # see conversation_sections


def conversation_sections(max_tokens: int = 16, agent: dict | None = None, llm: dict | None = None,
                          stt: dict | None = None, tts: dict | None = None, call: dict | None = None) -> dict:
    """Config sections for the conversation handler with the random-weight test models (transcripts and
    replies are nonsense; speech detection, timing, TTS audio and barge-in are real). Greedy LLM (temperature
    0, fixed seed) so that the same input gives the same reply; `max_tokens` small because espeak reads the
    babble out slowly.

    The babble's length depends on the transcript: tests whose timeline needs the reply to end well inside
    the call (or a word to be heard before a barge-in) pass `stt=BABBLE_STT`, whisper's full 30 s window,
    with which the tiny random whisper writes one word ("abilities") and the random LLM a short reply. With
    the fitted window (stt.fit_window, the default that the other conversation tests run) it writes ten
    words, and the LLM answers with 16 tokens of Thai script that espeak-ng spells out for 11 s."""
    for f in (TEST_STT_MODEL, TEST_VAD_MODEL, TEST_LLM_MODEL):
        check(f.is_file(), f"missing test model {f} (build the project first: the test models are generated)")
    return {
        "call": {"handler": "conversation", **(call or {})},
        "stt": {"model": str(TEST_STT_MODEL), "vad_model": str(TEST_VAD_MODEL), **(stt or {})},
        "llm": {"model": str(TEST_LLM_MODEL), "max_tokens": max_tokens, "temperature": 0.0, "seed": 1,
                **(llm or {})},
        "tts": dict(tts or {}),
        "agent": dict(agent or {}),
    }


def log_time(line: str) -> float:
    """Epoch seconds of a Parley log line's timestamp (spdlog, local time, ms resolution): comparable with
    capture timestamps (same host clock)."""
    import datetime
    return datetime.datetime.fromisoformat(line.split(None, 1)[0]).timestamp()


def turn_events(p: "Parley", **match) -> list[dict]:
    """event=turn lines of a Parley log, with the timing fields as floats and the flags as ints."""
    out = []
    for e in p.events("turn", **match):
        for k in TURN_TIMES:
            if k in e:
                try:
                    e[k] = float(e[k])
                except ValueError:
                    pass
        for k in ("turn", "early_end", "interrupted", "call"):
            if k in e and e[k].lstrip("-").isdigit():
                e[k] = int(e[k])
        out.append(e)
    return out


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit PCM to G.711 µ-law (exact zeros stay µ-law silence, 0xFF)."""
    x = np.clip(pcm.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    x = np.abs(x) + 0x84
    exp = np.floor(np.log2(x)).astype(np.int32) - 7
    exp = np.clip(exp, 0, 7)
    mant = (x >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8).tobytes()


def caller_timeline(t: "Test", pieces: list, name: str = "speech") -> tuple[Path, list[tuple[float, float]]]:
    """Builds the caller's whole audio as <workdir>/<name>.ul (for uac_echo.xml's rtp_stream) from pieces:
    a number = that many seconds of exact silence, a str = espeak-ng speech of that text, a (str, seconds)
    = speech cut to that length. Returns (the file, [(start, end) s of each speech piece's sound, measured
    from the file's first sample, i.e. from sipp's first RTP packet])."""
    pcm_parts, spans, pos, k = [], [], 0, 0
    for piece in pieces:
        if isinstance(piece, (int, float)):
            n = int(round(piece * 8000))
            pcm_parts.append(np.zeros(n, np.int16))
            pos += n
            continue
        text, secs = (piece, None) if isinstance(piece, str) else piece
        k += 1
        wav = speech_wav(t, text, t.dir / f"{name}-{k}.wav", 8000, seconds=secs)
        _, x = read_wav(wav)
        pcm = np.round(x * 32767).astype(np.int16)
        env = envelope(pcm.astype(np.float64), 8000, 10.0)
        loud = np.nonzero(env > 300)[0]
        if len(loud):
            spans.append(((pos + loud[0] * 80) / 8000, (pos + (loud[-1] + 1) * 80) / 8000))
        pcm_parts.append(pcm)
        pos += len(pcm)
    pcm = np.concatenate(pcm_parts) if pcm_parts else np.zeros(0, np.int16)
    out = t.dir / f"{name}.ul"
    out.write_bytes(ulaw_encode(pcm))
    log(f"caller audio {out.name}: {len(pcm) / 8000:.2f} s, speech at " +
        ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in spans))
    return out, spans


def call_flows(p: "Parley", calls=None) -> dict[str, tuple[int, int]]:
    """{call id: (Parley's local RTP port, the peer's RTP port)} from the event=call_answered lines (all
    calls, or those whose id is in `calls`)."""
    out = {}
    for e in p.events("call_answered"):
        if calls is not None and e.get("call") not in {str(c) for c in calls}:
            continue
        try:
            out[e["call"]] = (int(e["local_port"]), int(e["remote"].rsplit(":", 1)[1]))
        except (KeyError, ValueError):
            pass
    return out


def flow_streams(packets: list["Udp"], local_port: int, remote_port: int) -> tuple[list["Rtp"], list["Rtp"]]:
    """(Parley's RTP to the peer, the peer's RTP to Parley) of one call, each one SSRC's packets (the first
    SSRC seen that way), in capture order. Filtering on both ports keeps out RTP of other processes that a
    port-range capture filter also matches on a shared machine."""
    def one(src, dst):
        streams: dict[int, list[Rtp]] = {}
        for u in packets:
            if u.sport == src and u.dport == dst:
                r = parse_rtp(u)
                if r:
                    streams.setdefault(r.ssrc, []).append(r)
        return next(iter(streams.values())) if streams else []
    return one(local_port, remote_port), one(remote_port, local_port)


def packet_levels(stream: list["Rtp"]) -> list[tuple[float, float]]:
    """(capture time, RMS) of each G.711 packet of a stream, in capture order."""
    return [(r.ts, rms(g711_decode(r.payload, r.pt))) for r in stream if r.pt in (0, 8)]


def sound_segments(levels: list[tuple[float, float]], threshold: float = 300.0, gap: float = 0.3,
                   min_len: float = 0.06) -> list[tuple[float, float]]:
    """Runs of packets above `threshold` (RMS of 32768), joined across pauses shorter than `gap` s; runs
    shorter than `min_len` s dropped. [(first loud packet's time, last loud packet's time + 20 ms)]."""
    segs: list[list[float]] = []
    for ts, v in levels:
        if v <= threshold:
            continue
        if segs and ts - segs[-1][1] <= gap:
            segs[-1][1] = ts + 0.02
        else:
            segs.append([ts, ts + 0.02])
    return [(a, b) for a, b in segs if b - a >= min_len]


class StubRegistrar:
    """A minimal UDP registrar: answers every REGISTER with 200 OK (no auth), in a thread.

    For tests that need a [[line]] to exist (e.g. for its credentials) without a real registrar."""

    def __init__(self, t: "Test"):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        t.on_cleanup(self.close)

    def _serve(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            text = data.decode("utf-8", "replace")
            if not text.startswith("REGISTER "):
                continue
            self.requests.append(text)
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
            keep = [h for h in head if h.split(":", 1)[0].strip().lower() in
                    ("via", "v", "from", "f", "call-id", "i", "cseq")]
            to = next((h for h in head if h.split(":", 1)[0].strip().lower() in ("to", "t")), "To: <sip:x@x>")
            contact = next((h for h in head if h.split(":", 1)[0].strip().lower() in ("contact", "m")), None)
            exp = sip_header(text, "Expires") or "60"
            lines = ["SIP/2.0 200 OK"] + keep + [to + ";tag=stubreg"]
            if contact and exp.strip() != "0" and ";expires=0" not in contact:
                lines.append(f"{contact.split(';expires')[0]};expires={exp.strip()}")
            lines += ["Content-Length: 0", "", ""]
            try:
                self.sock.sendto("\r\n".join(lines).encode(), addr)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


# The start of every test Kamailio's request_route (KAMAILIO_REGISTRAR_CFG, test_nat, test_kamailio_tls):
# Max-Forwards, in-dialog requests along their Record-Route, CANCEL to its transaction. Inserted with
# .format(route_start=KAMAILIO_ROUTE_START, ...) into the config templates.
KAMAILIO_ROUTE_START = """    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }"""

KAMAILIO_REGISTRAR_CFG = """#!KAMAILIO
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
modparam("registrar", "min_expires", {min_expires})
modparam("registrar", "default_expires", 60)
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("rr", "enable_full_lr", 1)

request_route {{
    xlog("L_INFO", "event=request method=$rm ruri=$ru src=$si:$sp\\n");
{route_start}
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


class Kamailio:
    """A Kamailio registrar (digest auth over db_text, in-memory location, relay to registered contacts) on
    127.0.0.1:port, UDP only. subscribers: {user: password} in `domain`. Each start() is a fresh instance
    (new run dir, empty location table) on the same port, logging to <name>-<n>.log; stop() is SIGTERM and
    waits until every process of it is gone and the port is free. Always stopped at the end of the test."""

    def __init__(self, t: "Test", subscribers: dict[str, str], port: int | None = None,
                 domain: str = "127.0.0.1", min_expires: int = 5, name: str = "kamailio"):
        self.t = t
        self.subscribers = dict(subscribers)
        self.port = port or free_port(tcp=False)
        self.domain = domain
        self.min_expires = min_expires
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None
        t.on_cleanup(self._cleanup)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> "Kamailio":
        check(not self.alive(), f"{self.name} is already running")
        self.starts += 1
        kdir = self.t.dir / f"{self.name}-{self.starts}"
        db, run = kdir / "db", kdir / "run"
        db.mkdir(parents=True)
        run.mkdir()
        src = Path("/usr/share/kamailio/dbtext/kamailio")
        (db / "version").write_text((src / "version").read_text())
        rows = [(src / "subscriber").read_text().rstrip("\n")]
        for i, (user, password) in enumerate(self.subscribers.items(), 1):
            ha1 = md5hex(f"{user}:{self.domain}:{password}")
            ha1b = md5hex(f"{user}@{self.domain}:{self.domain}:{password}")
            rows.append(f"{i}:{user}:{self.domain}:{password}:{ha1}:{ha1b}")
        (db / "subscriber").write_text("\n".join(rows) + "\n")
        cfg = kdir / "kamailio.cfg"
        cfg.write_text(KAMAILIO_REGISTRAR_CFG.format(route_start=KAMAILIO_ROUTE_START, port=self.port, db=db,
                                                     min_expires=self.min_expires))
        r = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, timeout=30)
        check(r.returncode == 0, f"kamailio -c rejected the config: {r.stderr.decode(errors='replace')[-1500:]}")
        wait_until(lambda: _udp_free(self.port), timeout, what=f"UDP port {self.port} to be free for {self.name}")
        self.log_path = self.t.dir / f"{self.name}-{self.starts}.log"
        self._logf = open(self.log_path, "wb")
        proc = self.t.spawn(["kamailio", "-f", cfg, "-DD", "-E", "-Y", run, "-P", run / "kamailio.pid",
                             "-m", "64", "-M", "8"], name=f"{self.name}-{self.starts}", log_path=self.log_path,
                            stdout=self._logf, stderr=subprocess.STDOUT)
        self.proc = proc

        def up():
            if proc.poll() is not None:
                raise TestFailure(f"{self.name} exited with {proc.returncode}: {tail(self.log_path, 10)}")
            return not _udp_free(self.port)
        wait_until(up, timeout, what=f"{self.name} to listen on {self.addr}")
        time.sleep(0.5)  # the SIP workers are forked after the socket is bound
        log(f"{self.name} listening on {self.addr} (pid {proc.pid}, start #{self.starts})")
        return self

    def stop(self, timeout: float = 10.0):
        """SIGTERM to the main process; waits (bounded) for it, its workers and the port. Fails if it hangs."""
        if self.proc is None:
            return
        proc, hung = self.proc, False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                hung = True
        self.t.kill(proc)  # any worker left in its process group
        self.proc = None
        wait_until(lambda: _udp_free(self.port), timeout, what=f"UDP port {self.port} to be released by {self.name}")
        check(not hung, f"{self.name} did not exit within {timeout} s of SIGTERM (killed)")
        log(f"{self.name} stopped (port {self.port} free)")

    def _cleanup(self):
        if self.proc is not None:
            self.t.kill(self.proc)
            self.proc = None


@dataclass
class CallResult:
    rc: int
    elapsed: float
    stdout: str
    log_path: Path
    cfg: dict


# ----------------------------------------------------------------------------------------------------
# The test

def baresip_call(t: "Test", target: str, mic: Path, seconds: int, codec: str = "PCMU",
                 module: str = "g711.so", rate: int = 8000, name: str = "baresip",
                 extra_modules: tuple = (), account_params: str = "", dial: bool = True,
                 sip_port: int | None = None, extra_config: str = "") -> tuple[Path, Path, tuple[int, int]]:
    """baresip (headless, see shared/PEERS.md) dials sip:agent@target offering only `codec`, with the WAV
    `mic` as its microphone (aufile) and sndfile recording what it sends and hears into <workdir>/rec-<name>;
    it quits after `seconds` (SIGTERM twice if it hangs). `extra_modules` are loaded too (e.g. "srtp.so"),
    `account_params` are appended to its account line (e.g. ";mediaenc=srtp-mand"). dial=False: it does not
    dial but answers (answermode=auto) calls to sip:baresip@127.0.0.1:`sip_port` (run it in a thread then).
    `extra_config` lines are appended to its config (e.g. "sip_cafile /path/ca.crt": baresip 1.0.0 always
    adds a TLS transport, listening on sip_port + 1; it loads the file but does not refuse servers it fails).
    Returns (its log, the recording dir, its RTP range)."""
    conf, rec = t.dir / name, t.dir / f"rec-{name}"
    conf.mkdir()
    rec.mkdir()
    bport = sip_port or free_port(tcp=False)
    lo, hi = free_port_range(20)
    extra = "".join(f"module\t\t\t{m}\n" for m in extra_modules)
    extra_config = extra_config.rstrip("\n") + "\n" if extra_config else ""
    (conf / "config").write_text(f"""poll_method		epoll
sip_listen		127.0.0.1:{bport}
sip_transports		udp
net_interface		127.0.0.1
audio_player		alsa,null
audio_alert		alsa,null
audio_source		aufile,{mic}
audio_srate		{rate}
audio_channels		1
rtp_ports		{lo}-{hi}
jitter_buffer_delay	5-10
module_path		/usr/lib/baresip/modules
module			{module}
module			aufile.so
module			alsa.so
module			sndfile.so
{extra}module_app		account.so
module_app		menu.so
snd_path		{rec}
{extra_config}""")
    (conf / "accounts").write_text(
        f"<sip:baresip@127.0.0.1:{bport}>;regint=0;audio_codecs={codec};answermode={'manual' if dial else 'auto'}{account_params}\n")
    (conf / "contacts").write_text("\n")
    blog = t.dir / f"{name}.log"
    with open(blog, "wb") as f:
        b = t.spawn(["baresip", "-f", conf] + (["-e", f"/dial sip:agent@{target}"] if dial else []) + ["-t", str(seconds)],
                    name=name, log_path=blog, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        b.wait(seconds + 15)
    except subprocess.TimeoutExpired:
        log(f"{name} still running: SIGTERM twice")
        b.send_signal(signal.SIGTERM)
        time.sleep(1)
        b.send_signal(signal.SIGTERM)
        t.kill(b)
    return blog, rec, (lo, hi)


class Test:
    def __init__(self, name: str, doc: str | None = None):
        self.name = name
        ap = argparse.ArgumentParser(description=(doc or name).strip().splitlines()[0])
        ap.add_argument("--parley", default=os.environ.get("PARLEY_BIN", str(REPO / "build" / "bin" / "parley")),
                        help="the parley binary under test (default: build/bin/parley)")
        ap.add_argument("--keep", action="store_true", help="keep the work dir even when the test passes")
        self.args = ap.parse_args()
        self.parley_bin = Path(self.args.parley).resolve()
        self.dir = Path(tempfile.mkdtemp(prefix=f"parley-it-{name}-"))
        self.procs: list[tuple[subprocess.Popen, str, bool]] = []
        self.logs: list[Path] = []
        self.extra_logs: list[Path] = []
        self.measures: dict[str, object] = {}
        self.parleys: list[Parley] = []
        self._cleanups = []
        self.failures: list[str] = []

    # -- bookkeeping --------------------------------------------------------------------------------
    def expect(self, cond, msg: str) -> bool:
        """A check that does not stop the test: the failure is printed now and fails the test at the end
        (so that one Parley bug does not hide the result of the next, independent check)."""
        if not cond:
            self.failures.append(msg)
            log(f"CHECK FAILED: {msg}")
        return bool(cond)

    def measure(self, key: str, value):
        self.measures[key] = value
        print(f"MEASURE {self.name}.{key} = {value}", flush=True)

    def on_cleanup(self, fn):
        self._cleanups.append(fn)

    def spawn(self, cmd, name: str, log_path=None, kill_group: bool = True, **kw) -> subprocess.Popen:
        """Starts a process in its own session; it is killed (with its group) at the end of the test."""
        p = subprocess.Popen([str(c) for c in cmd], start_new_session=True, **kw)
        self.procs.append((p, name, kill_group))
        if log_path:
            self.logs.append(Path(log_path))
        return p

    def kill(self, p: subprocess.Popen, grace: float = 3.0):
        """SIGTERM then SIGKILL one process we started (and its process group: it leads its session)."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:  # leftover children in its group (e.g. kamailio workers), and the leader itself
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def run_cmd(self, cmd, timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)
        if r.returncode != 0:
            raise TestFailure(f"{' '.join(map(str, cmd))} failed ({r.returncode}): "
                              f"{r.stderr.decode(errors='replace')[-2000:]}")
        return r

    # -- parley -------------------------------------------------------------------------------------
    def parley_config(self, rtp_ports: int = 100, **sections) -> dict:
        """A config with fresh ports; keyword args update sections (sip=, media=, call=, log=, line=[...])."""
        lo, hi = free_port_range(rtp_ports)
        cfg = {
            "sip": {"listen": f"127.0.0.1:{free_port()}"},
            "media": {"rtp_ports": f"{lo}-{hi}", "address": "127.0.0.1", "codecs": ["PCMU", "PCMA", "G722"],
                      "timeout_s": 30},
            "call": {"handler": "echo", "max_concurrent": 32, "answer_delay_ms": 0, "echo_delay_ms": 200},
            "log": {"level": "info"},
            # Every test's Parley serves its API on a free port, with its files in the test's directory.
            "http": {"listen": f"127.0.0.1:{free_port()}", "token_file": str(self.dir / "http-token"),
                     "overrides_file": str(self.dir / "api-config.json")},
        }
        for sec, vals in sections.items():
            if isinstance(vals, dict):
                cfg.setdefault(sec, {}).update(vals)
            else:
                cfg[sec] = vals
        return cfg

    def parley(self, name: str = "parley", sets: list[str] | None = None, start: bool = True,
               rtp_ports: int = 100, **sections) -> Parley:
        check(self.parley_bin.is_file() and os.access(self.parley_bin, os.X_OK),
              f"parley binary not found or not executable: {self.parley_bin}")
        p = Parley(self, name, self.parley_config(rtp_ports, **sections), sets or [])
        self.parleys.append(p)
        if start:
            p.start()
        return p

    def parley_call(self, uri: str, name: str = "call", args: list | None = None, timeout: float = 40.0,
                    rtp_ports: int = 20, **sections) -> CallResult:
        """Runs `parley dial URI --config <fresh config> --timeout <timeout> [args]` to completion."""
        check(self.parley_bin.is_file() and os.access(self.parley_bin, os.X_OK),
              f"parley binary not found or not executable: {self.parley_bin}")
        cfg = self.parley_config(rtp_ports, **sections)
        cfg_path = self.dir / f"{name}.toml"
        cfg_path.write_text(toml_dumps(cfg))
        log_path, out_path = self.dir / f"{name}.log", self.dir / f"{name}.stdout"
        cmd = [self.parley_bin, "dial", uri, "--config", cfg_path, "--timeout", str(int(timeout))] + (args or [])
        log(f"{name}: {' '.join(map(str, cmd))}")
        t0 = time.monotonic()
        with open(log_path, "wb") as le, open(out_path, "wb") as lo:
            p = self.spawn(cmd, name=name, log_path=log_path, kill_group=False, stdout=lo, stderr=le,
                           stdin=subprocess.DEVNULL)
            try:
                rc = p.wait(timeout + 15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                raise TestFailure(f"parley dial did not exit within {timeout + 15:.0f} s (its own --timeout "
                                  f"{timeout:.0f} s): killed")
        r = CallResult(rc, time.monotonic() - t0, out_path.read_text(errors="replace"), log_path, cfg)
        log(f"{name}: exit {rc} after {r.elapsed:.1f} s; stdout: {r.stdout.strip()}")
        return r

    def conversation(self, name: str = "parley", sets: list[str] | None = None, max_tokens: int = 16,
                     agent: dict | None = None, llm: dict | None = None, stt: dict | None = None,
                     tts: dict | None = None, call: dict | None = None, ready_timeout: float = 60.0,
                     **sections) -> Parley:
        """Starts Parley with call.handler = "conversation" and the test models (see conversation_sections);
        other keyword args update sections as for parley() (media=, ...)."""
        conv = conversation_sections(max_tokens, agent, llm, stt, tts, call)
        for sec, vals in sections.items():
            if isinstance(vals, dict):
                conv.setdefault(sec, {}).update(vals)
            else:
                conv[sec] = vals
        p = self.parley(name, sets=sets, start=False, **conv)
        p.start(ready_timeout)
        return p

    # -- sipp ---------------------------------------------------------------------------------------
    def sipp_start(self, scenario: str, target: str | None, *, calls: int = 1, limit: int = 1,
                   rate: float | None = None, timeout: float = 30.0, duration_ms: int | None = None,
                   keys: dict | None = None, service: str | None = None, name: str | None = None,
                   extra: list | None = None, server: bool = False, local_port: int | None = None,
                   media_port: int | None = None) -> Sipp:
        """Starts sipp with tests/sip/scenarios/<scenario> (or a path) against `target` (host:port).

        Always: -i/-mi 127.0.0.1, its own SIP and media ports, -timeout with -timeout_error, stats/errors/
        messages traced to files in the work dir. duration_ms is -d (the length of a bare <pause/>)."""
        sc = Path(scenario) if os.sep in scenario else SCENARIOS / scenario
        check(sc.is_file(), f"no scenario {sc}")
        self._sipp_n = getattr(self, "_sipp_n", 0) + 1
        name = name or f"sipp{self._sipp_n}-{sc.stem}"
        self.sipp_local_port = local_port or free_port()
        mp = media_port or free_port_range(4)[0]
        files = {k: self.dir / f"{name}.{ext}" for k, ext in
                 (("stat", "stat.csv"), ("err", "errors.log"), ("msg", "messages.log"), ("out", "out.log"),
                  ("screen", "screen.log"))}
        cmd = ["sipp"]
        if target:
            cmd.append(target)
        cmd += ["-sf", str(sc), "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(self.sipp_local_port),
                "-mp", str(mp), "-m", str(calls), "-l", str(limit), "-nostdin",
                "-timeout", f"{int(timeout)}s", "-timeout_error",
                "-trace_stat", "-stf", str(files["stat"]), "-fd", "1",
                "-trace_err", "-error_file", str(files["err"]),
                "-trace_msg", "-message_file", str(files["msg"]),
                "-trace_screen", "-screen_file", str(files["screen"])]
        if rate is not None:
            cmd += ["-r", str(rate)]
        if duration_ms is not None:
            cmd += ["-d", str(duration_ms)]
        if service:
            cmd += ["-s", service]
        for k, v in (keys or {}).items():
            cmd += ["-key", k, str(v)]
        cmd += [str(x) for x in (extra or [])]
        log(f"{name}: {' '.join(cmd)}")
        s = Sipp(self, cmd, name, timeout, files)
        s.local_port = self.sipp_local_port
        s.media_port = mp
        return s

    def sipp(self, scenario: str, target: str | None, **kw) -> SippResult:
        """Runs sipp to completion (see sipp_start) and returns its result."""
        return self.sipp_start(scenario, target, **kw).wait()

    def good_call(self, p: Parley, duration_ms: int = 500, what: str = "") -> SippResult:
        """One plain call (uac_basic.xml) that must be answered and end normally; Parley must stay up."""
        r = self.sipp("uac_basic.xml", p.sip_addr, duration_ms=duration_ms, timeout=20)
        check(r.rc == 0 and r.successful == 1,
              f"a good call {what} was not answered/completed: sipp rc={r.rc}, successful={r.successful}\n"
              f"{r.errors()[-1500:]}")
        p.check_alive(what)
        return r

    # -- capture ------------------------------------------------------------------------------------
    def capture(self, bpf: str, name: str = "capture") -> Capture:
        return Capture(self, bpf, name).start()

    # -- audio --------------------------------------------------------------------------------------
    def speech_ulaw(self, text: str = "hello, this is the parley echo test", seconds: float | None = 1.0,
                    name: str = "speech") -> Path:
        """<workdir>/<name>.ul: espeak-ng speech as raw 8 kHz µ-law, for rtp_stream="<name>.ul,1,0"."""
        wav = speech_wav(self, text, self.dir / f"{name}.wav", 8000, seconds=seconds)
        return wav_to_ulaw(self, wav, self.dir / f"{name}.ul")

    # -- running ------------------------------------------------------------------------------------
    def cleanup(self):
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                log(f"cleanup error: {e}")
        for p, name, group in reversed(self.procs):
            if p.poll() is None:
                log(f"killing leftover {name} (pid {p.pid})")
                if group:
                    self.kill(p)
                else:
                    p.kill()
                    try:
                        p.wait(5)
                    except subprocess.TimeoutExpired:
                        pass

    def run(self, fn):
        t0 = time.monotonic()
        log(f"=== {self.name}: work dir {self.dir}, parley {self.parley_bin}")
        status, code = "PASS", 0
        try:
            fn(self)
            if self.failures:
                raise TestFailure(self.failures[0] if len(self.failures) == 1 else
                                  f"{len(self.failures)} checks failed:\n  - " + "\n  - ".join(self.failures))
        except TestFailure as e:
            if self.failures and str(e) not in "\n".join(self.failures):
                e = TestFailure(f"{e}\n  (earlier: " + "; ".join(self.failures) + ")")
            status, code = f"FAIL: {e}", 1
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            status, code = "ERROR (exception in the test)", 2
        finally:
            self.cleanup()
        for p in self.parleys:
            rc = p.proc.returncode if p.proc is not None else None
            if p.exit_code is None and rc not in (None, 0, -9, -15):
                log(f"{p.name} " + (f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"))
        if code != 0:
            for path in self.logs + self.extra_logs:
                print(f"----- tail of {path} -----\n{tail(path)}\n-----", flush=True)
        dt = time.monotonic() - t0
        print(f"RESULT {self.name}: {status} ({dt:.1f} s)", flush=True)
        if code == 0 and not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"work dir kept: {self.dir}", flush=True)
        sys.exit(code)


def wait_bye_tail(timeout_ms: int) -> str:
    """The end of a generated SIPp scenario: wait up to `timeout_ms` for Parley's BYE, answer it 200, end."""
    return f"""  <recv request="BYE" timeout="{timeout_ms}"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="500"/>
</scenario>
"""


class OpenAIDouble:
    """TEST DOUBLE for an OpenAI-compatible chat.completions server (streaming only), for the behaviours no
    model that runs here can show (tool calls, controlled token pacing). Every POST .../chat/completions is
    recorded (`requests`: path and parsed body) and answered with server-sent events from `script`: a list of
    (delay_s, delta, finish_reason) — sleep, then one chat.completion.chunk — then [DONE]. `sent_at` holds
    the wall-clock time each chunk left (comparable with capture timestamps: same host)."""

    def __init__(self, script: list):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.script = script
        self.requests: list[dict] = []
        self.sent_at: list[float] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    req = json.loads(body)
                except ValueError:
                    req = {"_unparsable": body.decode(errors="replace")}
                outer.requests.append({"path": self.path, "body": req})
                if not self.path.endswith("/chat/completions"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "double"}
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for delay, delta, finish in outer.script:
                    if delay:
                        time.sleep(delay)
                    chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    outer.sent_at.append(time.time())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------------------------------
# Network namespaces (NAT topologies, docs/nat.md): addresses that exist only inside namespaces the test
# creates; every namespace is deleted at the end of the test, on failure and at interpreter exit too.

class Netns:
    """Namespaces named <prefix>-<short>, prefix unique per test process (pid), so a leftover from a killed
    run never blocks the next one. add() creates one with lo up; veth() joins two; ex() runs a command in
    one (bounded); delete() kills what runs in them and deletes them (idempotent, also via atexit)."""

    def __init__(self, t: "Test", tag: str = "nat"):
        import atexit
        self.t = t
        self.prefix = f"pt{os.getpid()}{tag}"
        self.names: list[str] = []
        t.on_cleanup(self.delete)
        atexit.register(self.delete)

    def add(self, short: str) -> str:
        name = f"{self.prefix}-{short}"
        self.t.run_cmd(["ip", "netns", "add", name], timeout=10)
        self.names.append(name)
        self.ex(name, "ip", "link", "set", "lo", "up")
        return name

    def ex(self, ns: str, *cmd, timeout: float = 10.0) -> subprocess.CompletedProcess:
        return self.t.run_cmd(["ip", "netns", "exec", ns, *cmd], timeout=timeout)

    def veth(self, ns1: str, if1: str, addr1: str | None, ns2: str, if2: str, addr2: str | None):
        """A veth pair created directly inside the two namespaces (names never clash with the host's)."""
        self.t.run_cmd(["ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2])
        for ns, ifn, addr in ((ns1, if1, addr1), (ns2, if2, addr2)):
            if addr:
                self.ex(ns, "ip", "addr", "add", addr, "dev", ifn)
            self.ex(ns, "ip", "link", "set", ifn, "up")

    def spawn(self, ns: str, cmd: list, name: str, **kw) -> subprocess.Popen:
        return self.t.spawn(["ip", "netns", "exec", ns, *cmd], name=name, **kw)

    def capture(self, ns: str, iface: str, bpf: str, name: str) -> Capture:
        c = Capture(self.t, bpf, name)
        c.iface, c.prefix = iface, ["ip", "netns", "exec", ns]
        return c.start()

    def sipp_start(self, ns: str, ip: str, port: int, scenario: str, target: str | None, *, name: str,
                   timeout: float = 20.0, duration_ms: int | None = None, service: str | None = None,
                   calls: int = 1, media_port: int = 16000) -> Sipp:
        """sipp inside `ns` on ip:port (see Test.sipp_start for the traced files)."""
        sc = Path(scenario) if os.sep in scenario else SCENARIOS / scenario
        files = {k: self.t.dir / f"{name}.{ext}" for k, ext in
                 (("stat", "stat.csv"), ("err", "errors.log"), ("msg", "messages.log"), ("out", "out.log"))}
        cmd = ["ip", "netns", "exec", ns, "sipp"] + ([target] if target else []) + [
            "-sf", str(sc), "-i", ip, "-mi", ip, "-p", str(port), "-mp", str(media_port), "-m", str(calls),
            "-l", "1", "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-trace_stat", "-stf", str(files["stat"]), "-fd", "1", "-trace_err", "-error_file", str(files["err"]),
            "-trace_msg", "-message_file", str(files["msg"])]
        if duration_ms is not None:
            cmd += ["-d", str(duration_ms)]
        if service:
            cmd += ["-s", service]
        log(f"{name}: {' '.join(cmd)}")
        return Sipp(self.t, cmd, name, timeout, files)

    def delete(self):
        for ns in reversed(self.names):
            r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, timeout=10)
            for pid in r.stdout.decode().split():  # only processes inside our own namespace
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        if self.names:
            log(f"namespaces deleted: {' '.join(self.names)}")
        self.names = []
