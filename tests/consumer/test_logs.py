"""Logging: JSON lines or console text, stdlib records routed in, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from consumer.logs import configure_logging, redact

EVENT_HUBS_CONNECTION = (
    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;"
    "SharedAccessKey=c2VjcmV0LWtleQ+/=;EntityPath=ml-events"
)
STORAGE_CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=mlcheckpoints;"
    "AccountKey=Zm9vYmFyYmF6+/==;EndpointSuffix=core.windows.net"
)
SAS_HEADER = "SharedAccessSignature sr=sb%3a%2f%2fns&sig=c2lnbmF0dXJl%2B&se=1700000000&skn=listen"
SAS_URL = "https://acct.blob.core.windows.net/letters/x.json?sv=2022-11-02&sig=c2lnbmF0dXJl%3D&se=1"


class TerminalStream(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Each test configures from scratch; afterwards structlog and the root logger are restored."""
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, parsed as JSON."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def only_line(stream: io.StringIO) -> dict[str, Any]:
    """The one JSON line written."""
    lines = json_lines(stream)
    assert len(lines) == 1, lines
    return lines[0]


def test_json_lines_parse_and_carry_bound_context() -> None:
    """A JSON line carries the event, bound and context-var values, level and an ISO time."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.contextvars.bind_contextvars(replica="worker-0")
    structlog.get_logger().bind(partition="3").info("event.received", sequence_number=42)
    line = only_line(out)
    assert line["event"] == "event.received"
    assert (line["partition"], line["replica"], line["sequence_number"]) == ("3", "worker-0", 42)
    assert line["level"] == "info"
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None
    assert "logger" not in line


def test_records_below_the_level_are_dropped() -> None:
    """With level warning, info lines are not written and warnings are."""
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in json_lines(out)] == ["loud"]


def test_unknown_level_is_rejected() -> None:
    """A level name logging does not know is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("json", "verbose", stream=io.StringIO())


def test_console_output_is_not_json() -> None:
    """The console format writes readable key=value text, not JSON."""
    out = io.StringIO()
    configure_logging("console", "info", stream=out)
    structlog.get_logger().info("event.received", partition="3")
    text = out.getvalue()
    assert "event.received" in text
    assert "partition=3" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_writes_json_when_the_stream_is_not_a_terminal() -> None:
    """auto picks JSON for a stream that is not a TTY (a container's stdout)."""
    out = io.StringIO()
    configure_logging("auto", "info", stream=out)
    structlog.get_logger().info("started")
    assert only_line(out)["event"] == "started"


def test_auto_writes_console_text_on_a_terminal() -> None:
    """auto picks the console renderer for a TTY."""
    out = TerminalStream()
    configure_logging("auto", "info", stream=out)
    structlog.get_logger().info("started")
    assert "started" in out.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue())


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (EVENT_HUBS_CONNECTION, "c2VjcmV0LWtleQ", "KeyName=listen;SharedAccessKey=***;"),
        (STORAGE_CONNECTION, "Zm9vYmFyYmF6", "AccountName=mlcheckpoints;AccountKey=***;"),
        (SAS_HEADER, "c2lnbmF0dXJl", "SharedAccessSignature ***"),
        (SAS_URL, "c2lnbmF0dXJl", "?sv=2022-11-02&sig=***&se=1"),
    ],
    ids=["event-hubs", "storage", "sas-header", "sas-url"],
)
def test_redact_masks_only_the_secret_part(text: str, secret: str, kept: str) -> None:
    """redact() replaces the secret with *** and leaves the rest of the string readable."""
    redacted = redact(text)
    assert secret not in redacted
    assert kept in redacted


def test_secrets_inside_values_are_redacted() -> None:
    """Connection strings in the message, in values and in nested values lose their secrets."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.get_logger().info(
        f"connecting with {EVENT_HUBS_CONNECTION}",
        store=STORAGE_CONNECTION,
        letters={"url": SAS_URL, "auth": [SAS_HEADER]},
    )
    raw = out.getvalue()
    for secret in ("c2VjcmV0LWtleQ", "Zm9vYmFyYmF6", "c2lnbmF0dXJl"):
        assert secret not in raw
    line = only_line(out)
    assert "SharedAccessKey=***" in line["event"]
    assert line["letters"]["auth"] == ["SharedAccessSignature ***"]


def test_values_under_secret_named_keys_are_replaced_whole() -> None:
    """password, secret, key, token and connection_string keys (any case, nested) become ***."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.get_logger().info(
        "settings",
        password="hunter2",
        api_key="k-1",
        sasToken="t-1",
        connection_string="Endpoint=sb://x/",
        auth={"client_secret": "s-1", "tenant": "contoso"},
        partition_key="run-42",
    )
    line = only_line(out)
    for key in ("password", "api_key", "sasToken", "connection_string"):
        assert line[key] == "***"
    assert line["auth"] == {"client_secret": "***", "tenant": "contoso"}
    assert line["partition_key"] == "run-42"


def _fail_to_connect() -> None:
    raise ConnectionError(f"cannot open {EVENT_HUBS_CONNECTION}")


def test_exception_messages_are_redacted_in_json_tracebacks() -> None:
    """log.exception writes a structured traceback whose message has the secret masked."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        _fail_to_connect()
    except ConnectionError:
        structlog.get_logger().exception("intake.failed")
    assert "c2VjcmV0LWtleQ" not in out.getvalue()
    (exception,) = only_line(out)["exception"]
    assert exception["exc_type"] == "ConnectionError"
    assert "SharedAccessKey=***" in exception["exc_value"]


def test_exception_messages_are_redacted_on_the_console() -> None:
    """The console's formatted traceback has the secret masked too."""
    out = io.StringIO()
    configure_logging("console", "info", stream=out)
    try:
        _fail_to_connect()
    except ConnectionError:
        structlog.get_logger().exception("intake.failed")
    assert "ConnectionError" in out.getvalue()
    assert "c2VjcmV0LWtleQ" not in out.getvalue()


def test_an_exception_passed_as_a_value_is_redacted() -> None:
    """An exception object given as a field is written without the secret in its message."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.get_logger().warning("checkpoint.failed", error=ValueError(STORAGE_CONNECTION))
    assert "Zm9vYmFyYmF6" not in out.getvalue()
    assert "AccountKey=***" in only_line(out)["error"]


def test_stdlib_warnings_come_out_as_json_lines() -> None:
    """A stdlib logger's warning (the Azure SDK's) is a JSON line; its info is dropped."""
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    sdk = logging.getLogger("azure.eventhub._pyamqp.link")
    sdk.info("link state %s", "ATTACHED")
    sdk.warning("link %s detached: %s", "ml-events/0", "amqp:link:stolen")
    line = only_line(out)
    assert line["event"] == "link ml-events/0 detached: amqp:link:stolen"
    assert line["level"] == "warning"
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None


def test_stdlib_records_and_their_tracebacks_are_redacted() -> None:
    """Secrets in a stdlib record's message and in its exception are masked."""
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        _fail_to_connect()
    except ConnectionError:
        logging.getLogger("azure.eventhub").exception("retrying %s", EVENT_HUBS_CONNECTION)
    assert "c2VjcmV0LWtleQ" not in out.getvalue()
    line = only_line(out)
    assert line["level"] == "error"
    assert "SharedAccessKey=***" in line["exception"][0]["exc_value"]


def test_configuring_again_replaces_the_stdlib_route() -> None:
    """A second configure_logging leaves one stdlib route, writing to the new stream."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=second)
    logging.getLogger("azure").warning("once")
    assert first.getvalue() == ""
    assert only_line(second)["event"] == "once"
