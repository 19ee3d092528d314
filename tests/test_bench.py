"""
The side-by-side benchmark (bench/versus_servers.py) runs to the end on a
tiny load against the gateway, Prosody and ejabberd and prints its table.
This checks that the harness works (the same TLS, SASL EXTERNAL both ways,
dialback, the memory phase, a column per server and a ratio column per
other server), not how fast anything is: the figures are for
docs/performance.md.
"""

import os
import re
import subprocess
import sys

from twisted.internet import threads
from twisted.trial import unittest

from tests.interop.ejabberd import require_ejabberd
from tests.interop.peers import require_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *arguments, timeout):
    """
    Run C{bench/<name>} with C{arguments} (in a thread); the Deferred fires
    with the finished process, its output as text.
    """
    return threads.deferToThread(
        subprocess.run,
        [sys.executable, os.path.join(REPO, "bench", name), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


class VersusServersTests(unittest.TestCase):
    timeout = 300

    def run_bench(self, *arguments):
        return run_script("versus_servers.py", *arguments, timeout=280)

    async def test_small_run(self):
        require_program("prosody", "prosody")
        require_ejabberd()
        done = await self.run_bench(
            # Enough messages for the servers' CPU to span several accounting
            # ticks, so that the per-CPU figures exist.
            # Handshakes too: three dialback handshakes (about 3 ms of CPU
            # each) sometimes fell within one 10 ms tick and measured 0.
            "--repeats", "1", "--messages", "4000", "--handshakes", "12", "--streams", "10",
            "--servers", "gateway,prosody,ejabberd",
        )
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output[-3000:])
        self.assertIn("log level warn", output)
        table = output[output.index("medians of 1 repeat(s)"):]
        self.assertRegex(table, r"figure\s+gateway\s+Prosody\s+ejabberd\s+vs Prosody\s+vs ejabberd\n")
        row_re = r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\n"
        for figure in (
            "inbound, 1 stream: messages/s",
            "inbound, 4 streams: messages per CPU-s",
            "inbound, 4 streams: CPU-s per 10k stanzas",
            "outbound, 1 stream: messages per CPU-s",
            "outbound, 4 streams: messages/s",
            "outbound, 4 streams: CPU-s per 10k stanzas",
            "handshakes, SASL EXTERNAL: per second",
            "handshakes, SASL EXTERNAL: p95 ms",
            "handshakes, dialback: CPU ms each",
            "handshakes, dialback: p95 ms",
            "memory: MiB resident at start",
        ):
            row = re.search(re.escape(figure) + row_re, table)
            self.assertIsNotNone(row, f"{figure!r} missing from\n{table}")
            *figures, versus_prosody, versus_ejabberd = row.groups()
            self.assertNotIn("-", figures, f"{figure}: {row.group(0)}")
            self.assertRegex(versus_prosody, r"^\d+\.\d\dx$")
            self.assertRegex(versus_ejabberd, r"^\d+\.\d\dx$")
        # Ten streams are too few for a steady figure: only that there is one.
        memory = re.search(r"memory: KiB per idle stream\s+(\S+)\s+(\S+)\s+(\S+)", table)
        self.assertIsNotNone(memory, table)
        for value in memory.groups():
            float(value.replace(",", ""))
        # Every phase line names the TLS negotiated; the load generator
        # offered the groups of OpenSSL 3.0, so all servers negotiated the
        # same TLS 1.3 (the script stops if they do not).
        phases = re.findall(
            r"^   (gateway|Prosody|ejabberd) +(\w+).*; (TLSv[\w.]+ \S+ \S+)$", output, re.M
        )
        self.assertEqual(
            sorted((server, what) for server, what, _ in phases),
            sorted(
                [(server, what) for server in ("gateway", "Prosody", "ejabberd")
                 for what in ["inbound"] * 2 + ["outbound"] * 2 + ["handshakes"] * 2 + ["memory"]]
                + [("gateway", "handshakes"), ("gateway", "memory")]
            ),
            output[-3000:],
        )
        classic = [tls for _, _, tls in phases if "MLKEM" not in tls]
        self.assertEqual(set(classic), {"TLSv1.3 TLS_AES_256_GCM_SHA384 x25519"}, output[-3000:])
        self.assertEqual(len(classic), 21)
        # The hybrid phases: the gateway alone, with the post-quantum group.
        for figure in ("hybrid key exchange, handshakes: per second",
                       "hybrid key exchange, memory: KiB per idle stream"):
            row = re.search(re.escape(figure) + row_re, table)
            self.assertIsNotNone(row, table)
            float(row.group(1).replace(",", ""))
            self.assertEqual(row.group(2, 3, 4, 5), ("-", "-", "-", "-"))
        self.assertEqual(output.count("TLSv1.3 TLS_AES_256_GCM_SHA384 X25519MLKEM768"), 2)
        # The dialback callbacks Prosody and ejabberd made were answered and
        # valid; the gateway needs none for a peer whose certificate it
        # verified.
        callbacks = re.search(
            r"handshakes, dialback: callbacks made\s+(\S+)\s+(\S+)\s+(\S+)", table
        )
        self.assertEqual(callbacks.groups(), ("0", "12.0", "12.0"))

    async def test_subset(self):
        """
        Without the gateway there are no ratio columns; one server alone
        runs too.
        """
        require_ejabberd()
        done = await self.run_bench(
            "--repeats", "1", "--messages", "0", "--handshakes", "0", "--streams", "10",
            "--servers", "ejabberd", "--log-level", "error",
        )
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output[-3000:])
        table = output[output.index("medians of 1 repeat(s)"):]
        self.assertRegex(table, r"figure\s+ejabberd\n")
        self.assertRegex(table, r"memory: MiB resident at start\s+[\d.]+\n")

    async def test_bad_arguments(self):
        done = await self.run_bench("--servers", "openfire")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--servers takes one or more of gateway, prosody, ejabberd", done.stderr)
        done = await self.run_bench("--log-level", "notice")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--log-level", done.stderr)


class InboundPathTests(unittest.TestCase):
    """
    bench/inbound_path.py runs every kind of stanza through the real inbound
    path and prints a figure for each (it fails when a stanza is lost).
    """

    async def test_small_run(self):
        done = await run_script(
            "inbound_path.py", "--messages", "300", "--repeats", "2", timeout=120
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        figures = re.findall(r"^  (.+?)\s+CPU per 10,000 stanzas: best ([\d.]+) s", done.stdout, re.M)
        self.assertEqual([kind for kind, _ in figures], ["ascii", "emoji nickname", "rewritten domain"])
        for _, best in figures:
            self.assertGreater(float(best), 0)


class AttackRunTests(unittest.TestCase):
    """
    bench/attack.py runs the attack to the end and prints its figures; the
    gateway's memory stays bounded meanwhile (a loose bound here: the
    figures are for docs/security.md).
    """

    timeout = 180

    async def test_small_run(self):
        done = await run_script("attack.py", "--rounds", "5", "--messages", "20", timeout=170)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        # The attack reached the gateway (how much of it was read in the
        # time depends on s2s.read_rate, which the run prints).
        bounced = re.search(r"bounces sent by the gateway\s+(\d+)", done.stdout)
        self.assertGreaterEqual(int(bounced.group(1)), 1, done.stdout)
        self.assertRegex(done.stdout, r"s2s.read_rate of the gateway\s+524288")
        before, after = map(float, re.search(
            r"peak RSS before / after\s+([\d.]+) / ([\d.]+) MiB", done.stdout).groups())
        self.assertLess(after - before, 40, done.stdout)
        self.assertRegex(done.stdout, r"legitimate latency, attack: median / p90\s+[\d.]+ / [\d.]+ ms")


class MemoryFloorTests(unittest.TestCase):
    """
    bench/memory_floor.py prints the resident size after each import of the
    gateway's start and OpenSSL's own memory per kept TLS connection, with
    and without the peer's certificate.
    """

    async def test_small_run(self):
        done = await run_script("memory_floor.py", "--connections", "50", timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        sizes = re.findall(
            r"^  (.+?)\s+([\d.]+)\s*/\s*([\d.]+)\s*/\s*([\d.]+)", done.stdout, re.M
        )
        self.assertEqual(sizes[0][0], "a bare interpreter")
        self.assertEqual(sizes[-1][0], "the gateway's modules")
        totals = [float(total) for _, total, _, _ in sizes]
        self.assertEqual(totals, sorted(totals))  # imports only add
        tls = re.findall(r"^  (server|client) +(\S+) .+?\s+(-?[\d.]+) KiB$", done.stdout, re.M)
        self.assertEqual(
            [(side, group) for side, group, _ in tls],
            [("server", "x25519"), ("server", "x25519"), ("client", "x25519"),
             ("server", "X25519MLKEM768")],
        )
        for _, _, kib in tls:
            self.assertGreater(float(kib), 0)

    async def test_bad_arguments(self):
        done = await run_script("memory_floor.py", "--connections", "0", timeout=60)
        self.assertEqual(done.returncode, 2)
        self.assertIn("--connections", done.stderr)
