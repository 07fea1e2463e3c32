"""Child processes: stopped, killed and awaited by their PID, never by name."""

from __future__ import annotations

import os
import signal
import subprocess

from .waiting import until


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a child process with ``sig`` (SIGKILL after 10 s) and reap it."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


async def exit_code(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for ``process`` to exit without blocking the loop; its exit code."""
    await until(lambda: process.poll() is not None, timeout_s, f"exit of pid {process.pid}")
    return process.returncode


async def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` by its PID and reap it."""
    os.kill(process.pid, signal.SIGKILL)
    await exit_code(process, 10)
