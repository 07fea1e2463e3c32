"""Event Hubs Capture files: the Avro schema as Azure documents it, and writing one.

The product has its own copy (``consumer.commands.record.CAPTURE_SCHEMA``); this one is
written independently from Azure's documentation, so that a test comparing what ``mlevents
record`` writes against it can fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastavro

_PROPERTY_MAP = {"type": "map", "values": ["long", "double", "string", "bytes"]}
CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": _PROPERTY_MAP},
        {"name": "Properties", "type": _PROPERTY_MAP},
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}


def write_capture(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``records`` to ``path`` as a Capture file; ``path``."""
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(CAPTURE_SCHEMA), records)
    return path
