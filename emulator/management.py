"""The request/response nodes: ``$cbs`` (put-token) and ``$management`` (READ).

This module turns one decoded request message into one response message. It owns
SAS token verification and the property maps the SDK reads; link and session
plumbing live in the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

from emulator.addresses import SasKey
from emulator.amqp import Array, Int, Message, Properties, Symbol, Timestamp
from emulator.errors import AmqpError, NotFound, Unauthorized
from emulator.hub import Clock, Hub


def verify_sas_token(token: str, key: SasKey, now_s: float) -> None:
    """Check a ``SharedAccessSignature`` token's signature, key name and expiry.

    Raises:
        Unauthorized: the token does not verify.
    """
    if not token.startswith("SharedAccessSignature "):
        raise Unauthorized("InvalidSignature: the token is not a SharedAccessSignature.")
    fields = dict(urllib.parse.parse_qsl(token.removeprefix("SharedAccessSignature ")))
    resource, expiry = fields.get("sr", ""), fields.get("se", "")
    if fields.get("skn") != key.name:
        raise Unauthorized(f"InvalidSignature: unknown key name {fields.get('skn')!r}.")
    signed = f"{urllib.parse.quote_plus(resource)}\n{expiry}".encode()
    expected = base64.b64encode(hmac.new(key.key.encode(), signed, hashlib.sha256).digest())
    if not hmac.compare_digest(expected.decode(), fields.get("sig", "")):
        raise Unauthorized("InvalidSignature: The token has an invalid signature.")
    if not expiry.isdigit() or int(expiry) < now_s:
        raise Unauthorized("ExpiredToken: The token is expired.")


class Nodes:
    """Answers requests sent to ``$cbs`` and ``$management``."""

    def __init__(self, hubs: dict[str, Hub], sas_key: SasKey | None, clock: Clock = time.time):
        self._hubs = hubs
        self._sas_key = sas_key
        self._clock = clock

    def handle(self, node: str, request: Message) -> Message:
        """Answer one request; errors become status codes, never exceptions."""
        props = {str(k): v for k, v in request.application_properties.items()}
        try:
            if node == "$cbs":
                self._put_token(props, request.body)
                body: object = None
                status, description = 202, "Accepted"
            else:
                body = self._read(props)
                status, description = 200, "OK"
        except AmqpError as exc:
            body, status, description = None, exc.status_code, exc.description
        message_id = request.properties.message_id if request.properties else None
        return Message(
            properties=Properties(message_id=message_id, correlation_id=message_id),
            application_properties={
                # $cbs is read with kebab-case keys, $management with camelCase ones.
                "status-code": Int(status),
                "statusCode": Int(status),
                "status-description": description,
                "statusDescription": description,
            },
            body=body,
        )

    def _put_token(self, props: dict[str, object], token: object) -> None:
        if props.get("operation") != "put-token":
            raise AmqpError(f"Unsupported $cbs operation {props.get('operation')!r}.")
        if self._sas_key is not None:
            verify_sas_token(str(token), self._sas_key, self._clock())

    def _read(self, props: dict[str, object]) -> dict[object, object]:
        if props.get("operation") != "READ":
            raise AmqpError(f"Unsupported $management operation {props.get('operation')!r}.")
        if self._sas_key is not None:
            verify_sas_token(str(props.get("security_token")), self._sas_key, self._clock())
        name = str(props.get("name"))
        hub = self._hubs.get(name)
        if hub is None:
            raise NotFound(f"The messaging entity '{name}' could not be found.")
        if props.get("type") == "com.microsoft:partition":
            return self._partition(hub, str(props.get("partition")))
        return {
            "name": hub.name,
            "type": "com.microsoft:eventhub",
            "created_at": Timestamp(hub.created_ms),
            "partition_count": Int(len(hub.partitions)),
            "partition_ids": Array(hub.partition_ids, 0xB1),
        }

    def _partition(self, hub: Hub, partition_id: str) -> dict[object, object]:
        partition = hub.partition(partition_id)
        log = partition.log
        log.expire(int(self._clock() * 1000))
        last = log.last()
        return {
            "name": hub.name,
            "type": "com.microsoft:partition",
            "partition": partition.id,
            "begin_sequence_number": log.begin_sequence,
            "last_enqueued_sequence_number": last.sequence_number if last else -1,
            "last_enqueued_offset": str(last.offset) if last else "-1",
            "last_enqueued_time_utc": Timestamp(last.enqueued_ms if last else 0),
            "is_partition_empty": last is None,
            Symbol("runtime_info_retrieval_time_utc"): Timestamp(int(self._clock() * 1000)),
        }
