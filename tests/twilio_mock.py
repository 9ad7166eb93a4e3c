"""Twilio's contract mock (Prism serving ../shared/twilio-oai) for tests, and ways to steer it.

`start_mock()` runs `shared/tools/twilio-mock --background` on a free loopback port and returns
once the mock answers; `MockServer.stop()` ends it. The fixtures that use these live in
tests/conftest_twilio.py.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The repository and shared/ sit side by side: /work/main and /work/shared, and so in CI.
TWILIO_MOCK = Path(__file__).resolve().parents[2] / "shared" / "tools" / "twilio-mock"
START_TIMEOUT = 300  # seconds; the first start installs Prism under ~/.cache
STOP_TIMEOUT = 10

# A syntactically valid account SID: the contract checks the pattern ^AC[0-9a-fA-F]{32}$.
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "x"


class MockUnavailable(Exception):
    """The mock could not be started; the text says why."""


@dataclass
class MockServer:
    url: str
    pid: int
    dynamic: bool

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _running(pid):
    """Whether `pid` still runs (the mock is not our child: a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # No /proc here: ask the kernel instead.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _start_once(dynamic):
    port = free_port()
    command = [str(TWILIO_MOCK), "--port", str(port), "--background"]
    if dynamic:
        command.append("--dynamic")
    started = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT)
    if started.returncode != 0:
        raise MockUnavailable(
            f"{TWILIO_MOCK.name} exited with {started.returncode}: {started.stderr.strip()}"
        )
    server = MockServer(f"http://127.0.0.1:{port}", int(started.stdout.split()[-1]), dynamic)
    deadline = time.monotonic() + 30
    while not listening(port):
        if time.monotonic() > deadline or not _running(server.pid):
            server.stop()
            raise MockUnavailable(f"the mock said it started but nothing listens on {port}")
        time.sleep(0.1)
    return server


def start_mock(*, dynamic=False):
    """Start the mock on a free port and wait until it listens.

    The script rewrites one merged contract file under ~/.cache on every start, so a start that
    overlaps another one (another test run on the machine) can read it half-written: try twice.
    """
    if not TWILIO_MOCK.exists():
        raise MockUnavailable(f"{TWILIO_MOCK} is missing: the shared/ folder sits beside the repo")
    try:
        return _start_once(dynamic)
    except MockUnavailable:
        time.sleep(1)
        return _start_once(dynamic)
