"""What the test packages share: local peers, processes, builders and waits.

Test modules import from here and never from one another; a helper that one test package
alone uses may stay in that package. A module a kind of thing:

* ``ports``: free loopback ports, and waiting until something listens.
* ``waiting``: ``until``: poll a condition without blocking the event loop.
* ``processes``: stopping, killing and awaiting child processes by their PID.
* ``azurite``: Azurite's blob service, its well-known key, and containers in it.
* ``emulator``: the emulator as a process, and sending and receiving with the SDK.
* ``gate``: holds a peer's requests and carries them out later.
* ``webhooks``, ``smtp``, ``arm``: an HTTP receiver, an SMTP server, Azure Resource Manager.
* ``workers``: the worker in the test's loop or as ``mlevents run`` processes, its config.
* ``metrics``: reading the worker's metrics back.
* ``factories``: events, rule tables and the HTTP session executors are given.
* ``capture``: the Event Hubs Capture Avro schema, as Azure documents it.
* ``filters``: Event Grid's filter operators, exact JSON numbers, hypothesis strategies.
* ``schemas/``: Azure's ARM schemas for Event Grid, vendored (its README says from where).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository: processes run from it; the examples and config.toml are under it."""
SAMPLES = ROOT / "consumer" / "examples" / "events"
"""The sample Azure ML events the examples ship, one Event Hubs body a file."""
