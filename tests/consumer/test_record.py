"""``mlevents record``: live traffic into Capture files that ``match`` and ``send`` read back."""

from __future__ import annotations

from pathlib import Path

import fastavro
import pytest

from consumer.cli import main
from consumer.eventfiles import read_event_file

# The Avro schema of Event Hubs Capture files, as Azure documents it.
CAPTURE = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {
            "name": "SystemProperties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {
            "name": "Properties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}


def test_partition_is_read_from_system_properties_only(tmp_path: Path) -> None:
    """x-opt-partition-id in SystemProperties names the partition; in Properties it does not."""
    path = tmp_path / "capture.avro"
    records = [
        {"SequenceNumber": n, "Offset": "0", "EnqueuedTimeUtc": "", "Body": b"{}",
         "SystemProperties": system, "Properties": {"x-opt-partition-id": "3"}}
        for n, system in enumerate([{"x-opt-partition-id": "2"}, {}])
    ]  # fmt: skip
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(CAPTURE), records)
    assert [r.partition for r in read_event_file(str(path))] == ["2", None]


def test_keep_partitions_refuses_records_without_a_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """send --keep-partitions on a file with no partitions fails with exit 1 and names the line."""
    events = tmp_path / "plain.jsonl"
    events.write_text('{"a": 1}\n')
    cs = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=r;SharedAccessKey=k;EntityPath=h"
    cs += ";UseDevelopmentEmulator=true"
    assert main(["send", "--connection-string", cs, "--keep-partitions", str(events)]) == 1
    assert f"{events}:1: no partition recorded" in capsys.readouterr().err
