#!/usr/bin/env python3
"""
Slow-peer (slowloris) benchmark for xmpp-gateway, over loopback.

    .venv/bin/python bench/slow_peers.py [--messages N] [--connections M] [--duration S]

It starts a gateway for C{gw.bench} with the helpers of bench/federation.py
(test CA, loopback DNS server, gateway subprocess, sink component, the
C{peer.bench} load generator), with C{timeouts.authentication} set to 10 s,
and then:

  1. baseline: one authenticated s2s stream (STARTTLS + dialback) from
     127.0.0.1 sends N messages one at a time; the latency of each is the
     time from the write to the sink component counting it;
  2. attack: M connections held open at once from 127.0.0.2..127.0.0.9
     (round robin), for S seconds; half send a stream header one byte per
     second, half send a whole header and then nothing.  A connection the
     gateway closes is reopened (after 1 s) until the S seconds are over.
     Meanwhile the same peer stream keeps sending one message at a time,
     and one fresh s2s establishment is timed;
  3. drain: no more reopening; every slow connection still open is given
     until the authentication timeout plus a grace period to be closed by
     the gateway with connection-timeout.

It exits with status 1 after "BENCHMARK FAILED: ..." when the gateway
dies, the peer's stream or the sink breaks, a message does not arrive, no
slow connection is accepted, or the gateway leaves accepted slow
connections open past the authentication timeout.  See bench/README.md.
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import federation as fed  # noqa: E402  (bench/federation.py; puts the checkout on sys.path)
from federation import GW, LOOPBACK, PEER, BenchError, bounded, sleep  # noqa: E402
from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

AUTH_TIMEOUT = 10.0
CLOSE_GRACE = 5.0          # beyond the authentication timeout, before we call a connection "left open"
MESSAGE_TIMEOUT = 10.0     # one message not reaching the sink within this fails the run
REOPEN_DELAY = 1.0
MAX_CONNECTIONS = 1000     # hard bound on --connections
MAX_DURATION = 300.0       # hard bound on --duration
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]


# The slow connections -------------------------------------------------------------


class SlowConnection(protocol.Protocol):
    """
    One unauthenticated connection that sends a stream header slowly
    ("trickle": one byte per second) or all at once and then nothing
    ("hang").  It records what the gateway did to it.
    """

    def __init__(self, attack, record):
        self.attack = attack
        self.record = record
        self.loop = None
        self.received = b""

    def connectionMade(self):
        r = self.record
        r["connected"] = time.monotonic()
        header = fed.s2s_header(f"slow{r['slot']}.attack", GW)
        if r["mode"] == "hang":
            self.transport.write(header)
            r["sent"] = len(header)
        else:
            self.pending = header

            def trickle():
                if r["sent"] < len(self.pending):
                    self.transport.write(self.pending[r["sent"]:r["sent"] + 1])
                    r["sent"] += 1

            self.loop = task.LoopingCall(trickle)
            self.loop.clock = self.attack.reactor
            self.loop.start(self.attack.byte_interval, now=True)

    def dataReceived(self, data):
        if len(self.received) < 8192:
            self.received += data
        if self.record["error"] is None and b"</stream:error>" in self.received:
            self.record["error_at"] = time.monotonic()
            m = fed.ERROR_RE.search(self.received)
            self.record["error"] = m.group(1).decode() if m else "(unparsed)"
            t = fed.ERROR_TEXT_RE.search(self.received)
            self.record["error_text"] = t.group(1).decode("utf-8", "replace") if t else ""

    def connectionLost(self, reason):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.record["lost"] = time.monotonic()
        self.attack.closed(self.record, self)


class SlowFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, attack, record):
        self.attack = attack
        self.record = record

    def buildProtocol(self, addr):
        p = SlowConnection(self.attack, self.record)
        self.attack.open[self.record["id"]] = p
        return p

    def clientConnectionFailed(self, connector, reason):
        self.record["failed"] = reason.getErrorMessage()
        self.record["lost"] = time.monotonic()
        self.attack.closed(self.record, None)


class Attack:
    """
    Keeps C{count} slow connections open at once, each slot reopening its
    connection C{REOPEN_DELAY} after the gateway closes it, until stopped.
    """

    def __init__(self, reactor, port, count, sources, byte_interval):
        self.reactor = reactor
        self.port = port
        self.count = count
        self.sources = sources
        self.byte_interval = byte_interval
        self.records = []
        self.open = {}
        self.pending = {}
        self.stopping = False

    def start(self, spread=1.5):
        # Spread the initial connects a little so as not to overflow the
        # listen backlog (which would only measure SYN retries).
        for slot in range(self.count):
            self.pending[slot] = self.reactor.callLater(spread * slot / max(1, self.count), self.connect, slot)

    def connect(self, slot):
        self.pending.pop(slot, None)
        if self.stopping:
            return
        record = {
            "id": len(self.records), "slot": slot,
            "source": self.sources[slot % len(self.sources)],
            "mode": "trickle" if slot % 2 == 0 else "hang",
            "started": time.monotonic(), "connected": None, "lost": None, "failed": None,
            "error": None, "error_text": "", "error_at": None, "sent": 0, "aborted": False,
        }
        self.records.append(record)
        self.reactor.connectTCP(LOOPBACK, self.port, SlowFactory(self, record), timeout=10,
                                bindAddress=(record["source"], 0))

    def closed(self, record, connection):
        self.open.pop(record["id"], None)
        if not self.stopping:
            self.pending[record["slot"]] = self.reactor.callLater(REOPEN_DELAY, self.connect, record["slot"])

    def stop_reopening(self):
        self.stopping = True
        for call in self.pending.values():
            if call.active():
                call.cancel()
        self.pending.clear()

    def abort_all(self):
        for connection in list(self.open.values()):
            connection.record["aborted"] = True
            connection.transport.abortConnection()

    def open_count(self):
        return len(self.open)


# Measuring -------------------------------------------------------------------------------


async def send_one(reactor, client, sink, n):
    """
    Write one message on C{client}'s stream and wait for the sink to count
    it; return the latency in seconds.
    """
    arrived = defer.Deferred()
    sink.target = sink.count + 1
    sink.on_target = lambda: arrived.callback(time.perf_counter())
    stanza = (
        f"<message from='u@{PEER}' to='sink@{GW}' type='chat' id='s{n}'>"
        f"<body>{fed.BODY}</body></message>"
    ).encode("ascii")
    started = time.perf_counter()
    client.transport.write(stanza)
    arrived_at = await bounded(reactor, arrived, MESSAGE_TIMEOUT, f"message {n} to reach the sink")
    return arrived_at - started


async def latency_run(reactor, gateway, client, sink, interval, count=None, until=None, label=""):
    samples = []
    n = 0
    while (count is None or n < count) and (until is None or time.monotonic() < until):
        for broken, what in ((client.lost.called, f"the peer's s2s stream closed ({client.problem})"),
                             (sink.lost.called, f"the sink's stream closed ({sink.problem})"),
                             (not gateway.alive(), "the gateway exited")):
            if broken:
                raise BenchError(f"{label}: {what} after {n} messages")
        try:
            samples.append(await send_one(reactor, client, sink, f"{label}{n}"))
        except BenchError as e:
            raise BenchError(f"{label}: {e} (after {n} messages)") from None
        n += 1
        if interval > 0:
            await sleep(reactor, interval)
    return samples


def summary(samples):
    return {
        "count": len(samples),
        "median": statistics.median(samples),
        "p90": fed.percentile(samples, 0.9),
        "max": max(samples),
    }


async def timed_establish(peer):
    started = time.perf_counter()
    client = await peer.establish()
    return client, time.perf_counter() - started


# Set-up ------------------------------------------------------------------------------------


async def start_everything(reactor, folder, options):
    """
    Certificates, DNS, peer listener, gateway (authentication timeout
    10 s) and the sink, as bench/federation.py sets them up.
    """
    ca = fed.CertificateAuthority("Bench CA")
    gw_certificate, gw_key = ca.write_identity(os.path.join(folder, "pki"), GW)
    peer_certificate, peer_key = ca.write_identity(os.path.join(folder, "pki"), PEER)
    peer = fed.Peer(reactor, ca, peer_certificate, peer_key)
    peer_port = peer.listen()
    dns_server = fed.LoopbackDNSServer(reactor)
    s2s_port, component_port = fed.free_port(), fed.free_port()
    dns_server.add_srv(f"_xmpp-server._tcp.{PEER}", f"xmpp.{PEER}", peer_port)
    dns_server.add_a(f"xmpp.{PEER}", LOOPBACK)
    dns_server.add_srv(f"_xmpp-server._tcp.{GW}", f"xmpp.{GW}", s2s_port)
    dns_server.add_a(f"xmpp.{GW}", LOOPBACK)
    component_secret = fed.secrets.token_hex(16)
    config_file = os.path.join(folder, "gateway.toml")
    q = fed.toml_string
    # The [s2s] limits are left at their defaults (max_connections_per_address 20,
    # max_unauthenticated 200) unless given on the command line.
    limits = ""
    if options.max_per_address is not None:
        limits += f"max_connections_per_address = {options.max_per_address}\n"
    if options.max_unauthenticated is not None:
        limits += f"max_unauthenticated = {options.max_unauthenticated}\n"
    with open(config_file, "w") as f:
        f.write(
            f"state_dir = {q(os.path.join(folder, 'state'))}\n"
            f"[s2s]\nlisten = [{q(f'tcp:{s2s_port}:interface=127.0.0.1')}]\n{limits}"
            f"[components]\nlisten = [{q(f'tcp:{component_port}:interface={LOOPBACK}')}]\n"
            f"[admin]\nlisten = []\n"
            f'[domains."{GW}"]\ncertificate = {q(gw_certificate)}\n'
            f"key = {q(gw_key)}\ncomponent_secret = {q(component_secret)}\n"
            f"[dns]\nservers = [{q(f'{LOOPBACK}:{dns_server.port}')}]\ntimeout = 2.0\n"
            'allow_networks = ["127.0.0.0/8"]\n'
            f"[timeouts]\nconnect = 10.0\nauthentication = {AUTH_TIMEOUT}\n"
            f"[policy]\nrequire_tls = true\n"
        )
    gateway = fed.GatewayProcess(folder, config_file)
    gateway.start()
    print(f"bench: gateway pid {gateway.pid}, s2s on {LOOPBACK}:{s2s_port}, components on "
          f"{LOOPBACK}:{component_port}; authentication timeout {AUTH_TIMEOUT:g} s")
    return gateway, dns_server, peer, s2s_port, component_port, component_secret


# The run ---------------------------------------------------------------------------------


def classify(records, auth_timeout):
    """
    Sort the slow connections by what the gateway did with them.
    """
    out = {"attempts": len(records), "connect_failed": 0, "refused": 0, "refused_texts": {},
           "accepted": 0, "timed_out": 0, "timeout_ages": [], "early_timeouts": 0,
           "other_errors": {}, "closed_silently": 0, "left_open": 0}
    for r in records:
        if r["failed"] is not None or r["connected"] is None:
            out["connect_failed"] += 1
            continue
        if r["error"] == "resource-constraint":
            out["refused"] += 1
            text = re.sub(r"\d+\.\d+\.\d+\.\d+", "ADDRESS", r["error_text"])
            out["refused_texts"][text] = out["refused_texts"].get(text, 0) + 1
            continue
        out["accepted"] += 1
        if r["aborted"]:
            out["left_open"] += 1
        elif r["error"] == "connection-timeout":
            out["timed_out"] += 1
            age = (r["error_at"] or r["lost"]) - r["connected"]
            out["timeout_ages"].append(age)
            if age < auth_timeout - 0.5:
                out["early_timeouts"] += 1
        elif r["error"] is not None:
            key = f"{r['error']} {r['error_text']}".strip()
            out["other_errors"][key] = out["other_errors"].get(key, 0) + 1
        else:
            out["closed_silently"] += 1
    return out


async def run(reactor, options, folder, state):
    gateway, dns_server, peer, s2s_port, component_port, secret = await start_everything(
        reactor, folder, options)
    state.update(gateway=gateway, dns_server=dns_server, peer=peer)
    await fed.wait_for_gateway(reactor, gateway, [s2s_port, component_port])
    peer.gateway_port = await fed.resolve_gateway(reactor, dns_server.port)
    sink = fed.Sink(secret)
    state["sink"] = sink
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, component_port, timeout=10)
    await bounded(reactor, endpoint.connect(protocol.Factory.forProtocol(lambda: sink)),
                  10, "connecting the sink component")
    await bounded(reactor, sink.ready, 10, "sink component handshake")
    try:
        client, establish_baseline = await timed_establish(peer)
    except BenchError as e:
        raise BenchError(f"establishing the peer's s2s stream failed: {e}") from None
    state["clients"] = [client]
    print(f"bench: sink attached; peer.bench stream authenticated in {1000 * establish_baseline:.0f} ms")
    results = {"establish_baseline": establish_baseline}

    # 1. Baseline.
    print(f"\n[1/3] baseline: {options.messages} messages one at a time "
          f"({1000 * options.interval:g} ms pause between them)")
    cpu0, own0, t0 = gateway.cpu(), fed.own_cpu(), time.monotonic()
    samples = await latency_run(reactor, gateway, client, sink, options.interval,
                                count=options.messages, label="baseline")
    wall = time.monotonic() - t0
    results["baseline"] = dict(summary(samples), wall=wall, cpu=gateway.cpu() - cpu0,
                               own=fed.own_cpu() - own0)
    print_latency("baseline", results["baseline"])

    # 2. Attack.
    print(f"\n[2/3] attack: {options.connections} slow connections at once from "
          f"{SOURCES[0]}..{SOURCES[min(len(SOURCES), options.connections) - 1]} for "
          f"{options.duration:g} s (half trickle one byte per {options.byte_interval:g} s, "
          f"half hang after the header); the peer keeps sending")
    attack = Attack(reactor, s2s_port, options.connections, SOURCES, options.byte_interval)
    state["attack"] = attack
    rss0 = gateway.rss_mib()
    cpu0, own0, t0 = gateway.cpu(), fed.own_cpu(), time.monotonic()
    end = t0 + options.duration
    attack.start()
    await sleep(reactor, min(3.0, options.duration / 4))
    print(f"      {attack.open_count()} slow connections open; timing a fresh s2s establishment")
    try:
        fresh, establish_attack = await timed_establish(peer)
        state["clients"].append(fresh)
        fresh.close()
        results["establish_attack"] = establish_attack
    except BenchError as e:
        results["establish_attack"] = None
        results["establish_attack_error"] = str(e)
        print(f"      the fresh establishment failed: {e}")
    peak = [attack.open_count()]

    def watch():
        peak[0] = max(peak[0], attack.open_count())
    watcher = task.LoopingCall(watch)
    watcher.clock = reactor
    watcher.start(0.25)
    try:
        samples = await latency_run(reactor, gateway, client, sink, options.interval,
                                    until=end, label="attack")
        remaining = end - time.monotonic()
        if remaining > 0:
            await sleep(reactor, remaining)
    finally:
        watcher.stop()
    wall = time.monotonic() - t0
    results["attack"] = dict(summary(samples) if samples else {"count": 0}, wall=wall,
                             cpu=gateway.cpu() - cpu0, own=fed.own_cpu() - own0,
                             rss_before=rss0, rss_after=gateway.rss_mib(), peak_open=peak[0])
    if not samples:
        raise BenchError("attack: no message was timed during the attack")
    print_latency("attack", results["attack"])
    print(f"      at most {peak[0]} slow connections open at once; {len(attack.records)} opened in all")

    # 3. Drain: does the gateway close the rest at the authentication timeout?
    attack.stop_reopening()
    print(f"\n[3/3] drain: {attack.open_count()} slow connections still open; waiting for the "
          f"gateway to close them ({AUTH_TIMEOUT:g} s authentication timeout + {CLOSE_GRACE:g} s grace)")
    cpu0, t0 = gateway.cpu(), time.monotonic()
    deadline = time.monotonic() + AUTH_TIMEOUT + CLOSE_GRACE
    while attack.open_count() and time.monotonic() < deadline:
        await sleep(reactor, 0.2)
    results["drain"] = {"wall": time.monotonic() - t0, "cpu": gateway.cpu() - cpu0}
    attack.abort_all()
    await sleep(reactor, 0.2)
    results["slow"] = classify(attack.records, AUTH_TIMEOUT)
    results["log_timeouts"] = sum(
        1 for line in gateway.log_lines()
        if "closing with stream error connection-timeout" in line)
    if not gateway.alive():
        raise BenchError("the gateway exited during the attack")
    client.close()
    return results


def print_latency(label, r):
    print(f"      {r['count']} messages: latency median {1000 * r['median']:.2f} ms, "
          f"p90 {1000 * r['p90']:.2f} ms, max {1000 * r['max']:.2f} ms; gateway CPU "
          f"{r['cpu']:.2f} s over {r['wall']:.1f} s ({100 * r['cpu'] / r['wall']:.0f}% of a core)")


def print_report(results, options):
    def ms(x):
        return f"{1000 * x:.2f} ms"

    print("\n" + "=" * 78)
    print("xmpp-gateway slow-peer benchmark (loopback, one machine)")
    print("=" * 78)
    rows = []
    for phase in ("baseline", "attack"):
        r = results.get(phase)
        if not r or not r.get("count"):
            continue
        rows += [
            (f"{phase}: messages timed (one at a time)", f"{r['count']}"),
            ("  latency median / p90 / max", f"{ms(r['median'])} / {ms(r['p90'])} / {ms(r['max'])}"),
            ("  gateway CPU", f"{r['cpu']:.2f} s in {r['wall']:.1f} s ({100 * r['cpu'] / r['wall']:.0f}% of a core)"),
            ("  bench CPU", f"{r['own']:.2f} s ({100 * r['own'] / r['wall']:.0f}% of a core)"),
        ]
    a = results.get("attack")
    if a:
        rows += [
            ("  gateway RSS before / after attack", f"{a['rss_before']:.0f} / {a['rss_after']:.0f} MiB"),
            ("  slow connections open at once (peak)", f"{a['peak_open']} (target {options.connections})"),
        ]
    if "establish_baseline" in results:
        during = results.get("establish_attack")
        rows.append(("s2s establishment: baseline / during attack",
                     f"{ms(results['establish_baseline'])} / "
                     + (ms(during) if during is not None else
                        "FAILED: " + results.get("establish_attack_error", "not tried"))))
    d = results.get("drain")
    if d:
        rows.append(("drain: gateway CPU", f"{d['cpu']:.2f} s in {d['wall']:.1f} s"))
    s = results.get("slow")
    if s:
        ages = s["timeout_ages"]
        rows += [
            ("slow connections: attempts", f"{s['attempts']}"),
            ("  accepted / refused (resource-constraint)", f"{s['accepted']} / {s['refused']}"),
        ]
        for text, n in s["refused_texts"].items():
            rows.append(("    refused with", f"{n} x '{text}'"))
        if s["connect_failed"]:
            rows.append(("  TCP connect failed", f"{s['connect_failed']}"))
        rows.append(("  closed by the gateway with connection-timeout", f"{s['timed_out']} of {s['accepted']} accepted"))
        if ages:
            rows.append(("    age at close min / median / max",
                         f"{min(ages):.2f} / {statistics.median(ages):.2f} / {max(ages):.2f} s "
                         f"(timeout {AUTH_TIMEOUT:g} s)"))
        rows.append(("  gateway log lines 'connection-timeout'", f"{results['log_timeouts']}"))
        for text, n in s["other_errors"].items():
            rows.append(("  closed with another stream error", f"{n} x {text}"))
        if s["closed_silently"]:
            rows.append(("  closed without a stream error", f"{s['closed_silently']}"))
        rows.append(("  left open past timeout + grace", f"{s['left_open']}"))
    width = max((len(label) for label, _ in rows), default=0) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print("=" * 78)


def report_log(gateway):
    """
    Like bench/federation.py's, but without the expected connection-timeout
    and refusal lines that this benchmark provokes by the hundred.
    """
    lines = gateway.log_lines()
    interesting = [
        line for line in lines
        if re.search(r"#(critical|error|warn)\]|Traceback|Unhandled|stream error|failed", line)
        and "connection-timeout: not authenticated in time" not in line
        and "resource-constraint" not in line
    ]
    print(f"\ngateway log: {gateway.log_file} ({len(lines)} lines)")
    if not interesting:
        print("  nothing unexpected logged (connection-timeout and resource-constraint lines are expected)")
        return
    print(f"  {len(interesting)} unexpected line(s) (the first 20):")
    for line in interesting[:20]:
        print("    " + line)


def verdict(results):
    s = results.get("slow")
    if not s:
        return None
    problems = []
    if s["accepted"] == 0:
        problems.append(f"no slow connection was accepted ({s['refused']} refused, "
                        f"{s['connect_failed']} failed to connect): nothing was measured")
    if s["left_open"]:
        problems.append(f"the gateway left {s['left_open']} slow connection(s) open more than "
                        f"{AUTH_TIMEOUT + CLOSE_GRACE:g} s after they connected")
    if s["early_timeouts"]:
        problems.append(f"{s['early_timeouts']} slow connection(s) timed out before "
                        f"{AUTH_TIMEOUT:g} s")
    if s["closed_silently"] or s["other_errors"]:
        problems.append(f"{s['closed_silently'] + sum(s['other_errors'].values())} slow connection(s) "
                        f"closed other than by connection-timeout")
    return "; ".join(problems) or None


async def main(reactor, options):
    folder = tempfile.mkdtemp(prefix="xmpp-gateway-slow-")
    print(f"bench: gateway code {fed.code_version()} from {fed.REPO}; working folder {folder}")
    state = {}
    results = {}
    failure = None
    try:
        results = await run(reactor, options, folder, state)
        failure = verdict(results)
    except BenchError as e:
        failure = str(e)
    finally:
        attack = state.get("attack")
        if attack is not None:
            attack.stop_reopening()
            attack.abort_all()
        for client in state.get("clients", []):
            if client.transport is not None and not client.lost.called:
                client.transport.abortConnection()
        if state.get("sink") is not None:
            state["sink"].close()
        gateway = state.get("gateway")
        if gateway is not None and gateway.process is not None:
            if failure and gateway.alive():
                print(f"\nbench: last gateway log lines:\n{fed.log_tail(gateway)}")
            await gateway.stop(reactor)
        peer = state.get("peer")
        if peer is not None and peer.listener is not None:
            await peer.listener.stopListening()
        if state.get("dns_server") is not None:
            await state["dns_server"].stop()
    print_report(results, options)
    if state.get("gateway") is not None:
        report_log(state["gateway"])
    if failure:
        print(f"\nBENCHMARK FAILED: {failure}", file=sys.stderr)
        print(f"(files kept in {folder})", file=sys.stderr)
        raise SystemExit(1)
    print("\nOK: the peer's stream kept working and the gateway closed every accepted slow "
          "connection at the authentication timeout")
    if options.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Latency of a well-behaved s2s peer while slow connections attack the gateway.")
    parser.add_argument("--messages", type=int, default=200,
                        help="baseline messages, sent one at a time (default 200)")
    parser.add_argument("--connections", type=int, default=150,
                        help=f"slow connections held open at once (default 150, at most {MAX_CONNECTIONS})")
    parser.add_argument("--duration", type=float, default=20.0,
                        help=f"seconds the attack lasts (default 20, at most {MAX_DURATION:g})")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="pause between the peer's messages, seconds (default 0.02)")
    parser.add_argument("--byte-interval", type=float, default=1.0,
                        help="seconds between the header bytes of trickling connections (default 1)")
    parser.add_argument("--max-per-address", type=int, default=None,
                        help="set s2s.max_connections_per_address (default: the gateway's, 20)")
    parser.add_argument("--max-unauthenticated", type=int, default=None,
                        help="set s2s.max_unauthenticated (default: the gateway's, 200)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    o = parser.parse_args(argv)
    if not 1 <= o.messages <= 100000:
        parser.error("--messages must be between 1 and 100000")
    if not 1 <= o.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    if not 1 <= o.duration <= MAX_DURATION:
        parser.error(f"--duration must be between 1 and {MAX_DURATION:g} seconds")
    if not 0 <= o.interval <= 10 or not 0.05 <= o.byte_interval <= 60:
        parser.error("--interval must be 0..10 s and --byte-interval 0.05..60 s")
    return o


if __name__ == "__main__":
    arguments = parse_arguments(sys.argv[1:])
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, arguments)))
