"""KEDA's arithmetic: how its ``azure-eventhub`` scaler turns partition properties and
checkpoints into unprocessed event counts, a metric and a replica count.

Pure functions over plain values, shared by ``mlevents status`` (which reads the values) and
its tests (which pin them to the scaler's source, case by case).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

INT64_MAX = 2**63 - 1
KEDA_THRESHOLD = 64
KEDA_ACTIVATION_THRESHOLD = 0
KEDA_STALE_THRESHOLD = 10_000
"""The defaults of KEDA's ``unprocessedEventThreshold``, ``activationUnprocessedEventThreshold``
and ``stalePartitionInfoThreshold``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProperties:
    """What the hub says of one partition (``get_partition_properties``)."""

    partition_id: str
    beginning_sequence_number: int
    last_enqueued_sequence_number: int
    is_empty: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class KedaSettings:
    """The scaler's trigger metadata that the numbers depend on."""

    threshold: int = KEDA_THRESHOLD
    activation_threshold: int = KEDA_ACTIVATION_THRESHOLD
    stale_threshold: int = KEDA_STALE_THRESHOLD


def _int64(value: int) -> int:
    """``value`` as Go's ``int64`` arithmetic leaves it (two's complement wrap-around)."""
    return (value + 2**63) % 2**64 - 2**63


def keda_partition_lag(
    partition: PartitionProperties,
    checkpoint_sequence_number: int | None,
    *,
    stale_threshold: int = KEDA_STALE_THRESHOLD,
) -> int:
    """Unprocessed events in one partition, exactly as KEDA's ``azure-eventhub`` scaler counts
    them (``checkpointStrategy: blobMetadata``; ``None`` = no checkpoint blob).

    Follows kedacore/keda ``pkg/scalers/azure_eventhub_scaler.go`` (commit 01515ac):
    ``GetUnprocessedEventCountInPartition``, ``calculateUnprocessedEvents`` and
    ``GetUnprocessedEventCountWithoutCheckpoint``:

    * ``LastEnqueuedSequenceNumber == -1`` (empty partition): 0, before the checkpoint is
      looked at. KEDA consults nothing else: ``is_empty`` with a last sequence number of its
      own (every event expired) is not empty to it.
    * no checkpoint (BlobNotFound, ContainerNotFound): the whole retained partition,
      ``last - beginning + 1``, unless ``beginning == last != 0``, which counts 0.
    * ``last >= checkpoint``: ``last - checkpoint``.
    * ``last < checkpoint`` (the sequence wrapped around, or the partition information is
      older than the checkpoint): ``(MaxInt64 - checkpoint) + last``.
    * a count above ``MaxInt64 - stalePartitionInfoThreshold`` is taken for stale partition
      information: 0. (The stale rule does not apply without a checkpoint.)

    Arithmetic is Go's ``int64``, wrap-around included.
    """
    last = partition.last_enqueued_sequence_number
    if last == -1:
        return 0
    if checkpoint_sequence_number is None:
        beginning = partition.beginning_sequence_number
        if (beginning == 0 and last == 0) or beginning != last:
            return _int64(_int64(last - beginning) + 1)
        return 0
    done = checkpoint_sequence_number
    # Below the checkpoint: wrapped around, or partition information older than the checkpoint.
    count = _int64(last - done) if last >= done else _int64(_int64(INT64_MAX - done) + last)
    if count > _int64(INT64_MAX - stale_threshold):
        return 0
    return count


def keda_total(lags: Iterable[int]) -> int:
    """The sum KEDA makes of the partitions' counts: ``int64`` additions, and ``MaxInt64``
    when the sum came out negative (``GetMetricsAndActivity``)."""
    total = 0
    for lag in lags:
        total = _int64(total + lag)
    return INT64_MAX if total < 0 else total


def keda_metric(total: int, partition_count: int, threshold: int) -> int:
    """The metric KEDA reports: the total, or ``partitions * threshold`` when
    ``total / threshold`` (Go's truncating division) exceeds the partition count
    (``getTotalLagRelatedToPartitionAmount``)."""
    if total // threshold > partition_count:
        return _int64(partition_count * threshold)
    return total


def keda_replicas(metric: int, threshold: int, *, active: bool) -> int:
    """What the HPA asks for with KEDA's ``AverageValue`` target: ``ceil(metric / threshold)``,
    0 when not active (before min/max replica counts and the HPA's 10 % tolerance). The cap
    is KEDA's: up to ``threshold - 1`` events above ``partitions * threshold`` the metric is
    not capped, and this is one more than the partition count."""
    if not active:
        return 0
    return -(-metric // threshold)
