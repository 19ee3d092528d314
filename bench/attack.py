"""
An attack run: a peer that owns its domain authenticates, enables stream
management, never acknowledges and stops reading, then sends large IQs to a
local domain without a component, so that every bounce goes back to it (the
reproduction of the security review, docs/security.md); meanwhile a
legitimate peer's component exchanges messages with ours.

    .venv/bin/python bench/attack.py [--rounds N] [--messages M]

Everything runs in this one process, over loopback sockets with real TLS
and dialback: the gateway under attack (a.test, with a component for the
legitimate traffic and a second local domain, empty.test, with none), a
legitimate gateway (c.test) with its component, the attacker's hoarding
server (b.test) and the attacker's client (in a thread, with blocking
sockets).  It prints the process's RSS and peak RSS before and after the
attack, and the legitimate messages' latency (median, p90) before and
during it.  Because the process holds more than the gateway under attack,
the RSS figures bound the gateway's from above.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task, threads  # noqa: E402


def memory_kib():
    """
    (RSS, peak RSS) of this process, in KiB.
    """
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


class Case:
    """
    What L{tests.support.World} needs of a test case, outside trial.
    """

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="xmpp-gateway-attack-")
        self.cleanups = []
        self.count = 0

    def mktemp(self):
        self.count += 1
        return os.path.join(self.root, f"t{self.count}")

    def addCleanup(self, function, *args, **kwargs):
        self.cleanups.append((function, args, kwargs))

    async def clean(self):
        for function, args, kwargs in reversed(self.cleanups):
            result = function(*args, **kwargs)
            if isinstance(result, defer.Deferred):
                try:
                    await result
                except Exception:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


async def latencies(sender, receiver, count, tag):
    """
    Seconds each of C{count} messages took from one component to the
    other, sent one after another.
    """
    measured = []
    for n in range(count):
        started = time.monotonic()
        sender.message("alice@a.test", "carol@c.test", f"{tag} {n}", f"{tag}{n}")
        received = await receiver.next(timeout=30)
        if received["id"] != f"{tag}{n}":
            raise SystemExit(f"BENCHMARK FAILED: expected {tag}{n}, got {received['id']}")
        measured.append(time.monotonic() - started)
    return measured


def attack(port, rounds, stop):
    """
    The attacker's client (blocking; run in a thread): authenticate as b.test
    for empty.test by dialback over TLS, then send IQs of ~400 KB, at least
    C{rounds}, and on until C{stop} is set (the legitimate measurement runs
    under the attack from start to end).
    """
    from tests.test_failover import authenticated_attacker, big_iq

    peer = authenticated_attacker(port, "b.test", "empty.test")
    try:
        sent = 0
        while sent < rounds or not stop.is_set():
            peer.send(big_iq(sent, "x@b.test", "empty.test"))
            sent += 1
        return sent
    finally:
        peer.close()


async def run(reactor, options):
    from tests.support import TestComponent, World
    from tests.test_failover import FailoverTests

    case = Case()
    try:
        world = World(case)
        a = await world.gateway(
            "a.test",
            extra='[domains."empty.test"]\ncomponent_secret = "empty-secret"\n',
            s2s_extra="" if options.read_rate is None else f"read_rate = {options.read_rate}\n",
        )
        c = await world.gateway("c.test")
        alice = await world.component(a, "a.test")
        carol = TestComponent("c.test", "secret-for-c.test")
        await carol.connect(c.component_port)
        case.addCleanup(carol.disconnect)
        helper = FailoverTests()
        helper.addCleanup = case.addCleanup
        await helper.broken(world, "hoarding", 0, identity="b.test")
        # Warm up the legitimate route, then measure.
        await latencies(alice, carol, 5, "w")
        rss_before, peak_before = memory_kib()
        quiet = await latencies(alice, carol, options.messages, "q")
        stop = threading.Event()
        attacking = threads.deferToThread(attack, a.s2s_port, options.rounds, stop)
        await task.deferLater(reactor, 0.5, lambda: None)
        during = await latencies(alice, carol, options.messages, "d")
        stop.set()
        sent = await attacking
        bounced = a.router.bounced
        rss_after, peak_after = memory_kib()
        outbound = [s for s in a.federation.streams
                    if s.direction == "outbound" and s.peer_domain == "b.test"]
        held = max((s.bytes_out for s in outbound), default=0)

        def ms(values, fraction):
            ordered = sorted(values)
            return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

        print("attack run (one process, loopback, TLS, dialback)")
        print(f"  s2s.read_rate of the gateway           {a.config.s2s.read_rate or 'no limit'}")
        print(f"  attacker: {sent} IQs of ~400 KB ({sent * 0.4:.0f} MB; 99,000 children each) to a "
              f"domain with no component, its bounces hoarded (SM on, never acknowledged, not read)")
        print(f"  bounces sent by the gateway            {bounced}")
        print(f"  bytes written to the hoarding peer     {held:,}")
        print(f"  RSS before / after the attack          {rss_before / 1024:.1f} / "
              f"{rss_after / 1024:.1f} MiB")
        print(f"  peak RSS before / after                {peak_before / 1024:.1f} / "
              f"{peak_after / 1024:.1f} MiB")
        print(f"  legitimate latency, quiet: median / p90   {statistics.median(quiet) * 1000:.2f} / "
              f"{ms(quiet, 0.9):.2f} ms")
        print(f"  legitimate latency, attack: median / p90  {statistics.median(during) * 1000:.2f} / "
              f"{ms(during, 0.9):.2f} ms")
    finally:
        await case.clean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="attacking IQs at least (default 20; it goes on while measuring)")
    parser.add_argument("--messages", type=int, default=200,
                        help="legitimate messages measured before and during (default 200)")
    parser.add_argument("--read-rate", type=int, default=None,
                        help="s2s.read_rate of the gateway under attack (default: its default; "
                        "0: no limit)")
    options = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, options)))


if __name__ == "__main__":
    main()
