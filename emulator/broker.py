"""The broker: every hub the emulator serves, and what a new link may be bound to.

The ``Broker`` is shared by all connections. It resolves link addresses to hubs,
partitions and consumer groups, applies the reader rules when a consumer attaches,
and carries out the on-demand faults (dropping connections, detaching consumers).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.addresses import AddressError, SasKey, consumer_entity, producer_entity
from emulator.amqp import Attach, Symbol
from emulator.consumer_link import ConsumerLink
from emulator.errors import AmqpError, NotFound
from emulator.faults import Faults
from emulator.hub import Clock, Hub, HubSpec
from emulator.management import Nodes
from emulator.producer_link import ProducerLink
from emulator.session import Session, parse_selector
from emulator.storage import Retention

if TYPE_CHECKING:
    from emulator.connection import Connection

EPOCH = Symbol("com.microsoft:epoch")
RUNTIME_METRIC = "com.microsoft:enable-receiver-runtime-metric"


class Broker:
    """Hubs, request nodes, faults and live connections of one emulator."""

    def __init__(
        self,
        hubs: list[HubSpec],
        *,
        data_dir: Path | None = None,
        retention: Retention | None = None,
        sas_key: SasKey | None = None,
        idle_timeout_ms: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.hubs = {
            spec.name: Hub(spec, data_dir=data_dir, retention=retention, clock=clock)
            for spec in hubs
        }
        self.nodes = Nodes(self.hubs, sas_key, clock)
        self.faults = Faults()
        self.faults.bind(self)
        self.idle_timeout_ms = idle_timeout_ms
        self.connections: set[Connection] = set()
        self.connections_accepted = 0

    def hub(self, name: str) -> Hub:
        """Return a hub by name.

        Raises:
            NotFound: the emulator does not serve that hub.
        """
        hub = self.hubs.get(name)
        if hub is None:
            raise NotFound(f"The messaging entity '{name}' could not be found.")
        return hub

    def open_producer(self, session: Session, attach: Attach) -> ProducerLink:
        """Bind a producer link to ``<hub>`` or ``<hub>/Partitions/<id>``."""
        try:
            name, partition_id = producer_entity(str(getattr(attach.target, "address", "") or ""))
        except AddressError as exc:
            raise NotFound(str(exc)) from None
        hub = self.hub(name)
        partition = None if partition_id is None else hub.partition(partition_id)
        return ProducerLink(session, attach, hub=hub, partition=partition)

    def open_consumer(self, session: Session, attach: Attach) -> ConsumerLink:
        """Bind a consumer link to ``<hub>/ConsumerGroups/<group>/Partitions/<id>``."""
        try:
            name, group, partition_id = consumer_entity(
                str(getattr(attach.source, "address", "") or "")
            )
        except AddressError as exc:
            raise NotFound(str(exc)) from None
        hub = self.hub(name)
        hub.check_group(group)
        partition = hub.partition(partition_id)
        annotation, value, inclusive = parse_selector(attach.source)
        try:
            start = partition.start_sequence(annotation, value, inclusive)
        except ValueError as exc:
            raise AmqpError(
                f"Invalid selector value {value!r}.", "com.microsoft:argument-error"
            ) from exc
        properties = attach.properties or {}
        epoch = properties.get(EPOCH)
        capabilities = attach.desired_capabilities
        link = ConsumerLink(
            session,
            attach,
            partition=partition,
            group=group,
            next_sequence=start,
            epoch_value=int(epoch) if isinstance(epoch, int) else None,
            runtime_metrics=RUNTIME_METRIC in _symbols(capabilities),
        )
        partition.add_reader(group, link)
        return link

    def drop_connections(self) -> int:
        """Abort every client connection (fault injection)."""
        live = list(self.connections)
        for connection in live:
            connection.abort()
        return len(live)

    def detach_consumers(
        self, condition: str, description: str, hub: str | None, partition: str | None
    ) -> int:
        """Detach consumer links, optionally only one hub's or partition's (fault injection)."""
        count = 0
        for connection in list(self.connections):
            for session in list(connection.sessions.values()):
                for link in list(session.links.values()):
                    if not isinstance(link, ConsumerLink) or link.partition is None:
                        continue
                    if hub not in (None, link.partition.hub):
                        continue
                    if partition not in (None, link.partition.id):
                        continue
                    link.detach(AmqpError(description, condition))
                    count += 1
        return count

    def close(self) -> None:
        """Release every hub's files."""
        for hub in self.hubs.values():
            hub.close()


def _symbols(value: object) -> list[str]:
    """A symbol or array of symbols (capabilities may be either) as a list of strings."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []
