"""
What the interoperability tests share: finding the real servers, and
running one as a child process bound to loopback, stopped by its PID.
"""

import os
import shutil
import signal
import subprocess
import time

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest


def require_program(name, package):
    """
    The path of program C{name}; skip the test when it is missing, except
    under CI (C{CI=true}), where a missing peer is a failure.
    """
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} is not installed (Debian package {package}; tools/install-peers "
            "installs the interoperability peers)"
        )
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def package_version(package):
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


async def wait_for_port(address, port, timeout, process=None, describe=lambda: ""):
    """
    Wait until something accepts TCP connections on C{address}:C{port}.
    """
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"the server exited with status {process.returncode} before listening\n{describe()}"
            )
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on {address}:{port} after {timeout}s\n{describe()}")
        await task.deferLater(reactor, 0.1, lambda: None)


def stop_process(process, timeout=15):
    """
    Stop the child C{process} (a L{subprocess.Popen}): SIGTERM, then SIGKILL.

    @return: a Deferred firing once it has exited.
    """

    async def stop():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
            await task.deferLater(reactor, 0.1, lambda: None)

    return defer.Deferred.fromCoroutine(stop())
