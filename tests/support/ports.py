"""Loopback ports: one nothing listens on, and waiting until a process listens on one."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    """Whether something accepts connections on ``port``; fails if ``process`` exited."""
    if process.poll() is not None:
        raise RuntimeError(f"process exited with {process.returncode} before listening")
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """Block until ``process`` accepts connections on ``port``, or fail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if listening(port, process):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")
