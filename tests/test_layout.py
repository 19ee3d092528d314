"""
The layout: each folder of C{gateway/} is one concern, and imports run one
way (tools/import_graph.py, docs/architecture.md).
"""

import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys

from twisted.trial import unittest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "import_graph", os.path.join(HERE, "tools", "import_graph.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


class LayoutTests(unittest.TestCase):
    def test_imports_run_one_way(self):
        """
        No module imports a concern above its own, and every module of
        the package belongs to a concern of the layering.
        """
        tool = load_tool()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = tool.main([])
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("0 imports against the layering", out.getvalue())

    def test_the_tool_sees_an_arrow_against(self):
        """
        The check can fail: an import from a lower concern to a higher one
        is reported.
        """
        tool = load_tool()
        folder = self.mktemp()
        os.makedirs(os.path.join(folder, "gateway", "xmpp"))
        os.makedirs(os.path.join(folder, "gateway", "app"))
        for path, text in (
            ("gateway/__init__.py", ""),
            ("gateway/xmpp/__init__.py", ""),
            ("gateway/app/__init__.py", ""),
            ("gateway/app/service.py", "from gateway.xmpp import jid\n"),
            ("gateway/xmpp/jid.py", "from gateway.app.service import x\n"),
        ):
            with open(os.path.join(folder, path), "w") as f:
                f.write(text)
        self.patch(tool, "ROOT", os.path.join(os.path.abspath(folder), "gateway"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = tool.main([])
        self.assertEqual(status, 1, out.getvalue())
        self.assertIn("gateway.xmpp.jid -> gateway.app.service", out.getvalue())

    def test_type_checking_imports_are_not_arrows(self):
        """
        An import under C{if TYPE_CHECKING:} names a type and never runs:
        it is no arrow against the layering.  Its C{else} runs, and is one.
        """
        tool = load_tool()
        path = self.mktemp() + ".py"
        with open(path, "w") as f:
            f.write(
                "import typing\n"
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from gateway.app.config import DomainPolicy\n"
                "if typing.TYPE_CHECKING:\n"
                "    import gateway.s2s.federation\n"
                "else:\n"
                "    from gateway.ops import status\n"
                "def f():\n"
                "    from gateway.names import srv\n"
            )
        self.assertEqual(
            sorted(tool.imports(path, "gateway.verifiers.example")),
            ["gateway.names", "gateway.ops"],
        )


class LintTests(unittest.TestCase):
    def test_ruff(self):
        """
        ruff finds nothing (the rules are in pyproject.toml: unused and
        undefined names, syntax errors, sorted imports).  It comes with the
        test extras (pip install '.[test]', as make test does).
        """
        ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
        self.assertIsNotNone(ruff, "ruff is not installed: pip install '.[test]' (make test does)")
        done = subprocess.run(
            [ruff, "check", "gateway", "tests", "bench", "tools", "twisted"],
            cwd=HERE, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_mypy(self):
        """
        mypy finds nothing (the settings are in pyproject.toml: every
        function of the package and the twistd plugin typed, zope.interface
        through mypy-zope).  It comes with the test extras too.
        """
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--cache-dir", os.path.join(self.mktemp(), "mypy")],
            cwd=HERE, capture_output=True, text=True, timeout=600,
        )
        self.assertNotIn("No module named mypy", done.stderr, "pip install '.[test]' (make test does)")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)


class SeamTests(unittest.TestCase):
    """
    The seams tests fake are interfaces, and the real part and the fake are
    both held to them, so that neither drifts from the other.
    """

    def test_stream_owner(self):
        from twisted.internet.testing import MemoryReactorClock
        from zope.interface.verify import verifyObject

        from gateway.app.config import parse_config
        from gateway.app.state import GatewayState
        from gateway.records.memory import MemoryRecordStore
        from gateway.s2s.federation import Federation
        from gateway.s2s.flow import Backpressure
        from gateway.s2s.interfaces import IInboundStreamOwner, IOutboundStreamOwner
        from gateway.s2s.metrics import GatewayMetrics
        from gateway.testing import FakeDNSClient
        from tests.test_inbound import FakeFederation
        from tests.test_outbound import FakeRouter, FakeStreamFederation, FakeTLSProfile

        config = parse_config('[domains."local.example"]\n', "t.toml", "/nonexistent")
        federation = Federation(
            config, GatewayState("/nonexistent", "s", ()), FakeTLSProfile(), FakeDNSClient(),
            FakeRouter(), MemoryReactorClock(), records=MemoryRecordStore(),
            backpressure=Backpressure(), metrics=GatewayMetrics(),
        )
        self.assertTrue(verifyObject(IInboundStreamOwner, federation))
        self.assertTrue(verifyObject(IOutboundStreamOwner, federation))
        self.assertTrue(verifyObject(IInboundStreamOwner, FakeFederation()))
        self.assertTrue(verifyObject(IOutboundStreamOwner, FakeStreamFederation()))

    def test_dns_client(self):
        from twisted.internet.testing import MemoryReactorClock
        from zope.interface.verify import verifyObject

        from gateway.names.client import DNSClient
        from gateway.names.interfaces import IDNSClient
        from gateway.testing import FakeDNSClient

        self.assertTrue(verifyObject(IDNSClient, DNSClient(MemoryReactorClock(), [("127.0.0.1", 53)])))
        self.assertTrue(verifyObject(IDNSClient, FakeDNSClient()))

    def test_posh_agent(self):
        from treq.testing import RequestTraversalAgent
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.iweb import IAgent
        from twisted.web.resource import Resource
        from zope.interface.verify import verifyObject

        from gateway.posh.agent import posh_agent
        from gateway.testing import FakeDNSClient
        from tests.pki import CertificateAuthority
        from tests.test_posh import FailingAgent

        ca_file = CertificateAuthority().write_ca(self.mktemp())
        agent = posh_agent(MemoryReactorClock(), FakeDNSClient(), ca_file, 5.0)
        self.assertTrue(verifyObject(IAgent, agent))
        self.assertTrue(verifyObject(IAgent, RequestTraversalAgent(Resource())))
        self.assertTrue(verifyObject(IAgent, FailingAgent(ValueError())))

    def test_record_store(self):
        from zope.interface.verify import verifyObject

        from gateway.records.interfaces import IRecordStore
        from gateway.records.memory import MemoryRecordStore
        from tests.test_limits import FailingStore

        self.assertTrue(verifyObject(IRecordStore, MemoryRecordStore()))
        self.assertTrue(verifyObject(IRecordStore, FailingStore()))


class StateMachineDocsTests(unittest.TestCase):
    def test_docs_show_the_tables(self):
        """
        docs/architecture.md shows each stream's machine as its table says
        (gateway.s2s.stream.describe), and every state appears in it.
        """
        from gateway.s2s.inbound import InboundState, InboundStream
        from gateway.s2s.outbound import OutboundState, OutboundStream
        from gateway.s2s.stream import describe

        with open(os.path.join(HERE, "docs", "architecture.md"), encoding="utf-8") as f:
            docs = f.read()
        for stream_class, states in ((InboundStream, InboundState), (OutboundStream, OutboundState)):
            text = describe(stream_class)
            self.assertIn(f"```\n{text}\n```", docs, text)
            for state in states:
                self.assertIn(state.name, text)
