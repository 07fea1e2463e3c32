"""``mlevents match`` over a file of 1,000,000 bodies, next to a bare ``json.loads`` loop over
the same file: each in its own process, timed by wall clock (interpreter start included),
with the peak RSS the kernel reports for that process (``ru_maxrss`` from ``wait4``).

Linux counts in a process's ``ru_maxrss`` the peak of the memory it replaced at ``exec``:
for a child started straight from this process, that is this process's own peak (hundreds
of MB after ``decode_match`` ran here). So each run is started, timed and reaped by a small
launcher process, and its ``ru_maxrss`` is its own.

The file is JSON Lines in a temporary directory, one Event Hubs body a line: the bodies of the
``thresholds`` shape of ``bench.decode_match`` in turn, each with its own id. The rules are
that shape's 100-rule table, written as a JSON rules file. The two runs:

* bare: ``python -c`` reading the file line by line and calling ``json.loads`` on each line;
* match: ``python -m consumer match --rules rules.json --format jsonl FILE``, its output
  going to /dev/null.

Before that, ``match`` runs once on the distinct bodies, and must name the rules that
``RuleTable.match`` finds for them in this process.

Targets: match at most 3x the bare loop's time; match's peak RSS at most 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.decode_match import bodies, event_id, generated_rules, rule_table
from rules import RuleSource, decode_body, load_table

BODIES = 1_000_000
RULES = 100
SHAPE = "thresholds"
TARGET_RATIO = 3.0
TARGET_RSS_MB = 100.0
ROOT = Path(__file__).resolve().parents[1]
BARE = """\
import json, sys
with open(sys.argv[1], "rb") as lines:
    for line in lines:
        json.loads(line)
"""
LAUNCHER = """\
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as out:
    start = time.perf_counter()
    child = subprocess.Popen(sys.argv[2:], stdout=out)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "code": child.returncode}))
"""
"""``python -c LAUNCHER STDOUT ARGV...``: runs ``ARGV`` with its standard output to the file
``STDOUT``, and prints its wall time, peak RSS and exit code as JSON."""


@dataclass(frozen=True)
class Run:
    """One process run to its end."""

    seconds: float
    """Wall clock, from just before the process starts to after it is reaped."""
    peak_rss_mb: float
    exit_code: int
    stdout: bytes
    stderr: str


def run(argv: Sequence[str], folder: Path, *, keep_stdout: bool = False) -> Run:
    """Run ``argv`` from the project root, through the launcher, until it exits. Its standard
    output goes to /dev/null unless ``keep_stdout``; standard error to a file."""
    out_path, err_path = folder / "stdout", folder / "stderr"
    with err_path.open("wb") as err:
        launched = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(out_path) if keep_stdout else os.devnull, *argv],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=err, check=True,
        )  # fmt: skip
    report = json.loads(launched.stdout)
    return Run(
        report["seconds"],
        report["maxrss_kb"] / 1024,  # kilobytes on Linux
        report["code"],
        out_path.read_bytes() if keep_stdout else b"",
        err_path.read_text(encoding="utf-8", errors="replace"),
    )


def write_rules(path: Path) -> None:
    """The shape's table as one JSON rules file; it must load into the same filters."""
    text = json.dumps({"rules": generated_rules(RULES, SHAPE)})
    written = load_table([RuleSource(path.name, text)]).table
    expected = rule_table(RULES, SHAPE)
    assert [(r.name, r.filter) for r in written.rules] == [
        (r.name, r.filter) for r in expected.rules
    ]
    path.write_text(text, encoding="utf-8")


def write_events(path: Path, distinct: Sequence[bytes], count: int) -> None:
    """``count`` lines: the distinct bodies in turn, the ``n``-th with ``event_id(n)``."""
    parts = [body.split(event_id(n).encode()) for n, body in enumerate(distinct)]
    assert all(len(p) == 2 for p in parts), "each body holds its id once"
    with path.open("wb") as out:
        for n in range(count):
            head, tail = parts[n % len(parts)]
            out.write(b"%s%s%s\n" % (head, event_id(n).encode(), tail))


def match_argv(rules: Path, events: Path) -> list[str]:
    """``mlevents match`` as the bench runs it (``--format`` ends the ``--rules`` list)."""
    return [
        sys.executable, "-m", "consumer", "match",
        "--rules", str(rules), "--format", "jsonl", str(events),
    ]  # fmt: skip


def check_match(folder: Path, rules: Path, distinct: Sequence[bytes]) -> str | None:
    """What is wrong when ``match`` on the distinct bodies names other rules than
    ``RuleTable.match`` here; ``None`` when they agree."""
    sample = folder / "sample.jsonl"
    write_events(sample, distinct, len(distinct))
    result = run(match_argv(rules, sample), folder, keep_stdout=True)
    if result.exit_code != 0:
        return f"match exited {result.exit_code}: {result.stderr[-500:]}"
    table = rule_table(RULES, SHAPE)
    expected = [
        [rule.name for rule in table.match(event)] for b in distinct for event in decode_body(b)
    ]
    got = [json.loads(line)["matched"] for line in result.stdout.splitlines()]
    if got != expected:
        return f"match named other rules than RuleTable.match ({len(got)} lines)"
    matched = sum(map(len, got))
    print(f"check: match agrees with RuleTable.match on {len(got):,} events ({matched:,} matches)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Write the file, run both, print times, ratio and peak RSS; 1 if a run went wrong."""
    parser = argparse.ArgumentParser(prog="python -m bench match_file")
    parser.add_argument("--bodies", type=int, default=BODIES, help="lines in the file")
    count = parser.parse_args(argv or []).bodies
    distinct = bodies(SHAPE)
    with tempfile.TemporaryDirectory(prefix="mlevents-bench-") as name:
        folder = Path(name)
        rules, events = folder / "rules.json", folder / "events.jsonl"
        write_rules(rules)
        problem = check_match(folder, rules, distinct)
        if problem:
            print(f"CHECK FAILED: {problem}")
            return 1
        start = time.perf_counter()
        write_events(events, distinct, count)
        size = events.stat().st_size
        print(
            f"file: {count:,} bodies, {size / 1e6:,.0f} MB (~{size / count:.0f} B a line), "
            f"written in {time.perf_counter() - start:.1f} s; rules: {RULES} ({SHAPE} shape)"
        )
        bare = run([sys.executable, "-c", BARE, str(events)], folder)
        match = run(match_argv(rules, events), folder)
    status = 0
    for label, one in (("bare json.loads loop", bare), ("mlevents match", match)):
        print(
            f"{label:<21}: {one.seconds:6.1f} s ({count / one.seconds:>9,.0f} bodies/s), "
            f"peak RSS {one.peak_rss_mb:.0f} MB, exit code {one.exit_code}"
        )
        if one.exit_code != 0:
            print(f"  stderr: {one.stderr[-500:]}")
            status = 1
    ratio = match.seconds / bare.seconds
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"time match / bare: {ratio:.2f}x (target <= {TARGET_RATIO}) {verdict}")
    verdict = "ok" if match.peak_rss_mb <= TARGET_RSS_MB else "ABOVE TARGET"
    print(f"match peak RSS: {match.peak_rss_mb:.0f} MB (target <= {TARGET_RSS_MB:.0f}) {verdict}")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
