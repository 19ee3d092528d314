"""
The status page in a real headless browser (Debian's chromium): it loads
with the token, shows the streams as they are, marks the unauthenticated
ones, shows a hostile certificate subject as text, raises no console
message (script error, Content-Security-Policy violation, failed load),
and renders to a screenshot.

Chromium is installed by tools/install-peers.  Without it the tests are
skipped, except under CI=true, where they fail.

How console messages are seen: with C{--enable-logging=stderr --v=0}
chromium writes every console message to stderr as
C{INFO:CONSOLE:<line>] "<message>", source: <url>}; a control page that
breaks its own CSP shows the check still catches them.
"""

import os
import shutil
import signal
from html.parser import HTMLParser

from cryptography import x509
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support import World
from tests.test_admin import (
    ProcessResult,
    admin_port,
    certificate_file_of,
    exchange,
    leaf_sha256,
    live,
)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
#: How long one chromium run may take before it is stopped.
BROWSER_TIMEOUT = 60

#: A certificate subject a hostile peer could choose.
HOSTILE_CN = "<img src=x onerror=alert(1)>"


def subject_of(certificate_file):
    with open(certificate_file, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())[0].subject.rfc4514_string()


def find_chromium():
    for candidate in CHROMIUM_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def require_chromium():
    path = find_chromium()
    if path is not None:
        return path
    message = (
        "chromium is not installed (tools/install-peers installs it; "
        "or apt-get install chromium)"
    )
    if os.environ.get("CI") == "true":
        raise AssertionError(f"{message}, and CI=true requires the browser tests")
    raise unittest.SkipTest(message)


async def run_chromium(chromium, folder, url, *options):
    """
    Run headless chromium once on C{url} with its own profile in
    C{folder}, without blocking the reactor (the gateway runs on it).

    @return: C{(exit status, stdout, stderr)}.
    """
    os.makedirs(folder, exist_ok=True)
    profile = os.path.join(folder, "profile")
    arguments = [
        chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        "--disable-crash-reporter", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", *options, url,
    ]
    environment = dict(os.environ, HOME=folder)
    run = ProcessResult()
    process = reactor.spawnProcess(run, chromium, arguments, env=environment, path=folder)

    def overrun():
        # Stop only the browser we started, by its pid.
        try:
            process.signalProcess(signal.SIGKILL)
        except OSError:
            pass

    timer = reactor.callLater(BROWSER_TIMEOUT, overrun)
    try:
        code = await run.ended
    finally:
        if timer.active():
            timer.cancel()
    return code, b"".join(run.out), b"".join(run.err).decode("utf-8", "replace")


def console_messages(stderr):
    """
    The console messages chromium logged (see the module docstring).
    """
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class PageReader(HTMLParser):
    """
    Reads the streams table (rows: class and cell texts), the title, the
    element names and ids of a dumped DOM.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.tags = []
        self.ids = set()
        self.rows = []
        self._in_title = False
        self._table = None
        self._depth = 0
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        self.tags.append(tag)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "title":
            self._in_title = True
        if tag == "table":
            self._depth += 1
            if attributes.get("id") == "streams":
                self._table = self._depth
        if self._table is not None and tag == "tr" and self._row is None:
            self._row = {"class": attributes.get("class", ""), "cells": [],
                         "stream": attributes.get("data-stream")}
        if self._row is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "table":
            if self._table == self._depth:
                self._table = None
            self._depth -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)


def read_page(dom):
    reader = PageReader()
    reader.feed(dom.decode("utf-8"))
    reader.close()
    return reader


class CSPControl(Resource):
    """
    A page that breaks its own Content-Security-Policy and logs to the
    console: the control for L{console_messages}.
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Security-Policy", b"default-src 'none'")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return (b"<!DOCTYPE html><html><head><title>control</title>"
                b"<style>p { color: red }</style></head><body><p>control</p></body></html>")


class StatusPageInBrowserTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.chromium = require_chromium()

    @defer.inlineCallbacks
    def test_console_check_catches_violations(self):
        """
        The control: a CSP violation shows up as a console message.
        """
        site = Site(CSPControl())
        site.noisy = False
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        folder = os.path.abspath(self.mktemp())
        code, dom, stderr = yield defer.Deferred.fromCoroutine(run_chromium(
            self.chromium, folder, f"http://127.0.0.1:{port.getHost().port}/", "--dump-dom"))
        self.assertEqual(code, 0, stderr)
        self.assertIn(b"<p>control</p>", dom)
        messages = console_messages(stderr)
        self.assertTrue(messages, stderr)
        self.assertIn("Content Security Policy", messages[0])

    @defer.inlineCallbacks
    def test_status_page(self):
        """
        a.test federates with b.test (PKIX, a hostile certificate subject)
        and c.test (self-signed, accepted unauthenticated).  Its status page
        in chromium: the sign-in form without the token; with it, the four
        streams with the right cells, c.test's rows marked unauthenticated,
        the subject as text, no console message; and a screenshot.
        """
        world = World(self)
        a = yield defer.Deferred.fromCoroutine(world.gateway(
            "a.test", trust_ca=True,
            extra='[policy.domains."c.test"]\nverifiers = ["pkix"]\nallow_unauthenticated = true\n',
        ))
        b = yield defer.Deferred.fromCoroutine(world.gateway(
            "b.test", trust_ca=True, certificate_options={"common_name": HOSTILE_CN}))
        c = yield defer.Deferred.fromCoroutine(world.gateway("c.test", certificate=False))
        alice, _ = yield defer.Deferred.fromCoroutine(exchange(world, a, b))
        yield defer.Deferred.fromCoroutine(exchange(world, a, c, b_domain="c.test", alice=alice))
        port = yield defer.Deferred.fromCoroutine(admin_port(a))
        base = f"http://127.0.0.1:{port}"
        folder = os.path.abspath(self.mktemp())

        # Without the token: the sign-in form, and nothing else.
        code, dom, stderr = yield defer.Deferred.fromCoroutine(run_chromium(
            self.chromium, os.path.join(folder, "anonymous"), base + "/", "--dump-dom"))
        self.assertEqual(code, 0, stderr)
        page = read_page(dom)
        self.assertIn("token", page.ids)
        self.assertNotIn("streams", page.ids)
        self.assertNotIn(b"b.test", dom)
        # The 401 itself is a console message ("Failed to load resource");
        # nothing else may be.
        self.assertEqual(
            [m for m in console_messages(stderr) if "401" not in m], [], stderr)

        # With it (the link trades it for a cookie and redirects to /).
        url = f"{base}/?token={a.state.admin_token}"
        code, dom, stderr = yield defer.Deferred.fromCoroutine(run_chromium(
            self.chromium, os.path.join(folder, "signed-in"), url, "--dump-dom"))
        self.assertEqual(code, 0, stderr)
        self.assertEqual(console_messages(stderr), [], stderr)
        page = read_page(dom)
        self.assertEqual(page.title, "XMPP gateway status")
        self.assertNotIn("script", page.tags)
        self.assertNotIn("img", page.tags)  # the hostile subject stayed text
        self.assertIn("warnings", page.ids)
        header, *rows = page.rows
        self.assertEqual(header["cells"][:10], [
            "Stream", "Direction", "Local", "Peer", "Encrypted", "TLS", "Cipher", "Method",
            "Authenticated by", "Certificate (SHA-256, subject)"])
        self.assertEqual(len(rows), 4, rows)
        expected = {
            "b.test": ("pkix", leaf_sha256(certificate_file_of(b, "b.test")),
                       subject_of(certificate_file_of(b, "b.test"))),
            "c.test": ("none", leaf_sha256(certificate_file_of(c, "c.test")), "CN=c.test"),
        }
        # RFC 4514 escapes < and > with a backslash; the rest is as chosen.
        self.assertEqual(expected["b.test"][2], "CN=\\<img src=x onerror=alert(1)\\>")
        seen = set()
        for row in rows:
            cells = row["cells"]
            stream_id, direction, local, peer, encrypted, tls_version, cipher, method = cells[:8]
            seen.add((peer, direction))
            live_stream = live(a, peer)[direction]
            self.assertEqual(stream_id, live_stream.serial)
            self.assertEqual(row["stream"], live_stream.serial)
            self.assertEqual((local, encrypted), ("a.test", "yes"))
            self.assertEqual((tls_version, cipher), (live_stream.tls.version, live_stream.tls.cipher))
            method_expected, sha256, subject = expected[peer]
            self.assertEqual(method, method_expected)
            self.assertIn(sha256[:16], cells[9])
            self.assertIn(subject, cells[9])
            self.assertIn("PEM chain", cells[9])
            if peer == "c.test":
                self.assertIn("unauthenticated", row["class"].split())
                self.assertIn("UNAUTHENTICATED", cells[13])
            else:
                self.assertEqual(row["class"], "")
                self.assertEqual(cells[13], "")
        self.assertEqual(seen, {("b.test", "inbound"), ("b.test", "outbound"),
                                ("c.test", "inbound"), ("c.test", "outbound")})

        # A screenshot of it.
        screenshot = os.path.join(folder, "status.png")
        code, _, stderr = yield defer.Deferred.fromCoroutine(run_chromium(
            self.chromium, os.path.join(folder, "screenshot"), url,
            f"--screenshot={screenshot}", "--window-size=1280,800", "--hide-scrollbars"))
        self.assertEqual(code, 0, stderr)
        self.assertEqual(console_messages(stderr), [], stderr)
        with open(screenshot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"), png[:16])
        self.assertGreater(len(png), 10000)
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        self.assertEqual((width, height), (1280, 800))
