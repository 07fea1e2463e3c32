"""``mlevents deadletter list|show|replay``: look at the dead-letter store and re-drive it.

Replay runs an entry through the current rules with the worker's own handler: a body that
failed to decode is processed whole; a failed action is carried out again alone (its rule
and position), so the actions that succeeded the first time are not repeated. An entry is
deleted once its replay produced no new dead letter; otherwise the new letter, with the new
error, takes its place.

An entry that cannot be read (not a valid letter, an unreadable file) is named on stderr and
skipped; the others are listed or replayed all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumer.commands.progress import Progress
from consumer.config import Config, load_config
from consumer.errors import UnreadableEntryError

if TYPE_CHECKING:
    from consumer.stores.deadletters import DeadLetter, DeadLetterStore
    from consumer.worker.handler import Handler, Received
    from rules import RuleTable


def add_parser(commands: Any) -> None:
    """Add ``deadletter list|show|replay``."""
    deadletter = commands.add_parser("deadletter", help="inspect and replay dead letters")
    deadletter.add_argument(
        "--config", required=True, metavar="PATH", help="config.toml (its [deadletters] store)"
    )
    actions = deadletter.add_subparsers(
        dest="deadletter_command", required=True, metavar="ACTION", help="what to do"
    )
    listing = actions.add_parser("list", help="one line per dead letter, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead letter in full")
    show.add_argument("id", metavar="ID", help="the entry's id (the first column of list)")
    replay = actions.add_parser("replay", help="re-drive dead letters through the current rules")
    replay.add_argument("ids", nargs="*", metavar="ID", help="entries to replay (default: all)")
    deadletter.set_defaults(func=_deadletter)


def _deadletter(args: argparse.Namespace) -> int:

    from consumer.logs import configure_logging

    # Replay carries out actions, so it needs their secrets; the event hub's it never does.
    sections = ["deadletters"]
    if args.deadletter_command == "replay":
        sections += ["checkpoints", "ledger", "email"]
    config = load_config(args.config, secrets_of=sections)
    configure_logging(config.logging.format, config.logging.level)
    if args.deadletter_command == "list":
        return asyncio.run(list_letters(config, as_json=args.json))
    if args.deadletter_command == "show":
        return asyncio.run(show_letter(config, args.id))
    return asyncio.run(replay_letters(config, args.ids))


@contextlib.asynccontextmanager
async def _letters(config: Config) -> AsyncIterator[DeadLetterStore]:
    """The configured dead-letter store, with the Azure AD credential if it needs one."""
    from consumer.credentials import LazyCredential
    from consumer.worker.wiring import dead_letter_store

    async with contextlib.AsyncExitStack() as stack:
        yield await stack.enter_async_context(
            dead_letter_store(config, LazyCredential(config, stack))
        )


@dataclass(slots=True)
class _Skipped:
    """Counts the entries that cannot be read, naming each on stderr as it is met."""

    count: int = 0

    def __call__(self, error: UnreadableEntryError) -> None:
        self.count += 1
        print(f"mlevents: warning: {error}; skipped", file=sys.stderr)


async def list_letters(config: Config, *, as_json: bool) -> int:
    """Print one line per entry, oldest first (or one JSON object per line); 0 even when
    some entries could not be read, since the warning names them and the rest are listed."""
    skipped = _Skipped()
    async with _letters(config) as store:
        letters = await store.list(on_unreadable=skipped)
    for letter in letters:
        if as_json:
            print(json.dumps(summary(letter)))
        else:
            what = (letter.action and f"{letter.rule}:{letter.action}") or letter.reason
            print(
                f"{letter.id}  partition {letter.partition} seq {letter.sequence_number}  "
                f"{what}  attempts {letter.attempts}  {letter.error}"
            )
    if not as_json:
        unreadable = f", {skipped.count} unreadable" if skipped.count else ""
        print(f"{len(letters)} dead letter(s){unreadable}")
    return 0


async def show_letter(config: Config, letter_id: str) -> int:
    """Print one entry in full, body included."""
    async with _letters(config) as store:
        letter = await store.get(letter_id)
    print(letter.to_json().decode("utf-8"))
    return 0


async def replay_letters(config: Config, ids: Sequence[str]) -> int:
    """Re-drive the named entries (all of them when ``ids`` is empty); 1 if any failed again
    or was kept, an entry that cannot be read included (it stays for a person to look at)."""

    import structlog

    from consumer.credentials import LazyCredential
    from consumer.rulefiles import load_rule_files
    from consumer.worker.handler import Handler
    from consumer.worker.metrics import Metrics
    from consumer.worker.wiring import dead_letter_store, open_actions

    log = structlog.get_logger("mlevents.replay")
    table = load_rule_files(config.rules.files).table
    failed = 0
    skipped = _Skipped()
    async with contextlib.AsyncExitStack() as stack:
        azure_ad = LazyCredential(config, stack)
        store = await stack.enter_async_context(dead_letter_store(config, azure_ad))
        metrics = Metrics(clock=lambda: 0.0)
        actions = await open_actions(config, stack, log, azure_ad, metrics)
        handler = Handler(
            rules=lambda: table,
            executors=actions.executors,
            ledger=actions.ledger,
            dead_letters=store,
            metrics=metrics,
            log=log,
        )
        letters = await _chosen(store, ids, skipped)
        replayed = 0
        progress = Progress(lambda: (replayed, failed), ("letters", "failed again"))
        try:
            for letter in letters:
                progress.clear()  # the letter's line (and the handler's logs) go below it
                failed += 0 if await _replay(letter, table, handler, store) else 1
                replayed += 1
                progress.tick()
        finally:
            progress.done()
    unreadable = f"; {skipped.count} unreadable, kept" if skipped.count else ""
    print(
        f"replayed {len(letters)}: {len(letters) - failed} done, {failed} failed again{unreadable}"
    )
    return 1 if failed or skipped.count else 0


async def _replay(
    letter: DeadLetter, table: RuleTable, handler: Handler, store: DeadLetterStore
) -> bool:
    """Re-drive one entry and print its outcome; whether it is done (deleted)."""
    only = _only(letter)
    if only is not None and not _still_planned(table, letter, only):
        # Running nothing is not success: keep the letter for a person to look at.
        print(f"{letter.id}: kept: rule {only[0]!r} no longer has action #{only[1]} for this event")
        return False
    parked = await handler.handle(received(letter), only=only)
    await store.delete(letter.id)
    print(f"{letter.id}: {'failed again' if parked else 'done'}")
    return not parked


async def _chosen(
    store: DeadLetterStore, ids: Sequence[str], skipped: _Skipped
) -> list[DeadLetter]:
    """The entries ``ids`` names (all when it is empty), but those that cannot be read."""
    if not ids:
        return await store.list(on_unreadable=skipped)
    letters = []
    for letter_id in ids:
        try:
            letters.append(await store.get(letter_id))
        except UnreadableEntryError as exc:
            skipped(exc)
    return letters


def received(letter: DeadLetter) -> Received:
    """The message a dead letter was made from."""
    from consumer.worker.handler import Received

    return Received(
        partition=letter.partition,
        body=letter.body,
        sequence_number=letter.sequence_number or 0,
        offset=letter.offset or "",
        enqueued_time=letter.enqueued_time,
        properties=dict(letter.properties),
    )


def _still_planned(table: RuleTable, letter: DeadLetter, only: tuple[str, int]) -> bool:
    """Whether the current rules still plan the letter's action for its event."""

    from rules import DecodeError, decode_body, plan

    try:
        events = decode_body(letter.body)
    except DecodeError:
        return False
    return any((d.rule.name, d.index) == only for e in events for d in plan(table, e))


def _only(letter: DeadLetter) -> tuple[str, int] | None:
    if letter.reason != "action" or not letter.rule or not letter.action:
        return None
    _, _, position = letter.action.rpartition("#")
    return (letter.rule, int(position)) if position.isdigit() else None


def summary(letter: DeadLetter) -> dict[str, object]:
    """The entry without its body, for listings."""
    return {
        "id": letter.id, "reason": letter.reason, "error": letter.error,
        "partition": letter.partition, "offset": letter.offset,
        "sequence_number": letter.sequence_number, "event_id": letter.event_id,
        "rule": letter.rule, "action": letter.action, "attempts": letter.attempts,
        "created": letter.created.isoformat(),
    }  # fmt: skip
