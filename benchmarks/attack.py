"""Attack harness: try to make `xmodal` lose, duplicate or redo results, leak, or do harm.

    python benchmarks/attack.py [--kills 24] [--kills-per-db 4] [--hold 90] [--seed 0]
    python benchmarks/attack.py --quick        # a small configuration (tests/test_attack.py)

Every `xmodal` command runs as a user would run it (a subprocess, in its own session and with
its own $TMPDIR), on a synthetic study. Five attacks:

1. kill -9: `xmodal run -j 2` is killed at random (seeded) moments, each time resumed by the next
   `xmodal run`, then run once more uninterrupted; the final database is compared with an
   uninterrupted reference run of the same study. Counted: reference results missing (lost),
   results present twice (duplicated), finished runs whose `finished_at` changed after they
   were first seen finished (redone), `xmodal-*` temp dirs left in the killed run's $TMPDIR
   (leaked), processes of the killed run's session still alive `--grace` s after the kill
   (orphaned workers), and tracebacks in any output.
2. Busy database: while the study runs, a process holds `duckdb.connect(db, read_only=True)` and
   a long `xmodal query --timeout 0` (a cross join) runs, both for `--hold` seconds (the query is
   then stopped with Ctrl-C). Counted: the study's exit code, runs recorded and spooled, and,
   after the next `xmodal run`, runs lost.
3. A second runner through another spelling of the database (symlink, hard link, `dir/..`)
   while the first runs: each must be refused ("in use"); then the first gets SIGTERM and must
   stop like Ctrl-C (exit 130, no `running` row, no temp dir, no traceback).
4. Writing queries through `xmodal query` (ATTACH of a hard link READ_WRITE + DELETE, COPY TO,
   EXPORT DATABASE, SET, PRAGMA, CHECKPOINT, read_text('/etc/passwd'), several statements, ...):
   each must be refused, the database file's bytes unchanged, no file written.
5. Adversarial study files of at most 2 KB (long runs of spaces in headers and keys, deep
   nesting, a huge grid, seeds out of range): `xmodal validate` exit code, wall time, no traceback.

Prints one summary table and exits 1 if any invariant fails. The machine's load average is
printed too: wall times are from one run on whatever machine this is.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from xmodal.testing import to_toml

REPO = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback (most recent call last)"

# 2 directions x (linear + mlp) x (trained + untrained) x seeds runs; ~0.1-1 s each.
STUDY = """\
[study]
name = "attack"
seeds = {seeds}

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = ["forward", "backward"]

[data.params]
n_items = {n_items}
dim_text = 32
dim_image = 48

[[mapping]]
name = "linear"

[[mapping]]
name = "mlp"
depth = 2
hidden = 64

[[loss]]
name = "mse"

[train]
epochs = {epochs}
batch_size = 32

[[metric]]
name = "mnno"
k = [1, 5, 10]
"""

# A result is identified by these columns; the same key twice is a duplicated result.
RESULT_KEY = (
    "run_id",
    "measurement_id",
    "split",
    "metric",
    "comparison",
    "k",
    "similarity",
    "epoch",
)

# Holds the database read-only (as a notebook would) for argv[2] seconds.
READER = """
import sys, time, duckdb
deadline = time.monotonic() + float(sys.argv[2])
while True:  # the runner holds the file for a moment when it writes: retry until we are in
    try:
        con = duckdb.connect(sys.argv[1], read_only=True)
        break
    except duckdb.Error:
        time.sleep(0.05)
print("holding", flush=True)
con.execute("SELECT count(*) FROM runs").fetchall()
time.sleep(max(0.0, deadline - time.monotonic()))
con.close()
"""

# Reads the whole database through a cross join that does not end on its own.
# Long whatever the database holds: a cross join with `runs` itself would end at once while the
# study has not recorded a run yet (an empty table), and the CLI now starts fast enough to see it.
LONG_QUERY = (
    "SELECT (SELECT count(*) FROM runs) + count(*) FROM range(1000000) a, range(1000000) b "
    "WHERE (a.range * b.range) % 7 = 3"
)


def study_text(seeds: int, epochs: int, n_items: int) -> str:
    return STUDY.format(seeds=list(range(seeds)), epochs=epochs, n_items=n_items)


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """One `xmodal` command run in a subprocess, in its own session and $TMPDIR."""

    args: list[str]
    tmpdir: Path
    log: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    wall: float = 0.0

    @property
    def code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Harness:
    """Starts xmodal commands, remembers every output (for tracebacks) and cleans up after them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.invocations: list[Invocation] = []
        self._count = 0

    def start(self, *args: object, name: str = "xmodal") -> Invocation:
        self._count += 1
        label = f"{self._count:03d}-{name}"
        tmpdir = self.root / "tmp" / label
        tmpdir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k != "XMODAL_DB"}
        # PYTHONFAULTHANDLER: a command that hangs is ended with SIGABRT, which prints where.
        env.update(TMPDIR=str(tmpdir), COLUMNS="200", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        inv = Invocation([str(a) for a in args], tmpdir, self.root / "logs" / f"{label}.log")
        inv.log.parent.mkdir(parents=True, exist_ok=True)
        with inv.log.open("w") as log:
            inv.started = time.monotonic()
            inv.process = subprocess.Popen(
                [sys.executable, "-m", "xmodal", *inv.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,  # its workers share its session id: found after a kill
            )
        self.invocations.append(inv)
        return inv

    def wait(self, inv: Invocation, timeout: float = 900.0) -> int:
        assert inv.process is not None
        try:
            inv.process.wait(timeout)
        except subprocess.TimeoutExpired:
            inv.process.kill()
            inv.process.wait()
        inv.wall = time.monotonic() - inv.started
        return inv.process.returncode

    def run(self, *args: object, name: str = "xmodal", timeout: float = 900.0) -> Invocation:
        inv = self.start(*args, name=name)
        self.wait(inv, timeout)
        return inv

    def tracebacks(self) -> list[Invocation]:
        return [inv for inv in self.invocations if TRACEBACK in inv.output]


def session_processes(session: int) -> list[int]:
    """Live (not zombie) processes whose session id is `session` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry))
    return found


def wait_for_session_to_end(session: int, grace: float) -> list[int]:
    """The session's processes still alive after `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = session_processes(session)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def wait_until_open(process: subprocess.Popen, path: Path, timeout: float) -> float:
    """Wait until `process` has `path` open (Linux /proc); return when (time.monotonic())."""
    target = os.path.realpath(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{process.pid}/fd/{fd}") == target:
                        return time.monotonic()
        time.sleep(0.05)
    return time.monotonic()


def wait_until_locked(process: subprocess.Popen, db: Path, timeout: float) -> None:
    """Wait until `process` holds the run lock of `db` (its pid is in `<db>.lock`), ends, or
    `timeout` seconds pass."""
    lock = db.with_name(db.name + ".lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if lock.exists() and f'"pid": {process.pid}' in lock.read_text(errors="replace"):
            return
        time.sleep(0.1)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def temp_dirs(tmpdir: Path) -> list[Path]:
    """The process pool's exported-data directories (xmodal.executors.make_temp_dir)."""
    return sorted(p for p in tmpdir.glob("xmodal-*") if p.is_dir())


# -- database comparisons --------------------------------------------------------------------------


def read_db(db: Path, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def finished_runs(db: Path) -> dict[str, object]:
    """run_id -> finished_at of every finished run ({} when there is no database yet)."""
    if not db.exists():
        return {}
    try:
        rows = read_db(db, "SELECT run_id, finished_at FROM runs WHERE status = 'finished'")
    except duckdb.CatalogException:  # created by the run lock, schema not written yet
        return {}
    return dict(rows)


def running_rows(db: Path) -> int:
    return read_db(db, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0]


def results(db: Path) -> list[tuple]:
    columns = ", ".join(RESULT_KEY)
    return read_db(db, f"SELECT {columns}, value FROM results")


@dataclass
class Comparison:
    lost: int = 0  # reference results missing
    duplicated: int = 0  # extra copies of a result key
    different: int = 0  # present in both, other value
    extra: int = 0  # keys the reference does not have


def compare_results(
    reference: list[tuple], final: list[tuple], tolerance: float = 1e-9
) -> Comparison:
    """Compare result rows `(*RESULT_KEY, value)` of a database with a reference's."""
    ref = {row[:-1]: row[-1] for row in reference}
    counts = Counter(row[:-1] for row in final)
    got = {row[:-1]: row[-1] for row in final}
    out = Comparison()
    out.duplicated = sum(n - 1 for n in counts.values() if n > 1)
    out.lost = sum(1 for key in ref if key not in got)
    out.extra = sum(1 for key in got if key not in ref)
    for key, value in ref.items():
        other = got.get(key)
        if key in got and not _same(value, other, tolerance):
            out.different += 1
    return out


def _same(a: object, b: object, tolerance: float) -> bool:
    if a is None or b is None:
        return a is b
    fa, fb = float(a), float(b)  # type: ignore[arg-type]
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return abs(fa - fb) <= tolerance


def redone_runs(seen: dict[str, object], now: dict[str, object]) -> list[str]:
    """Runs seen finished before whose finish time changed (or that are no longer finished)."""
    return [run for run, at in seen.items() if now.get(run) != at]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def spool_entries(db: Path) -> tuple[int, int]:
    """(entries waiting, entries moved to bad/) in the spool beside the real database file."""
    spool = Path(os.path.realpath(db)).with_name(Path(os.path.realpath(db)).name + ".spool")
    waiting = len(list(spool.glob("*.pkl"))) if spool.is_dir() else 0
    bad = len(list((spool / "bad").iterdir())) if (spool / "bad").is_dir() else 0
    return waiting, bad


# -- the summary -----------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    value: str
    expected: str
    ok: bool | None  # None: a figure, not an invariant


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def invariant(self, name: str, value: object, expected: object, ok: bool) -> None:
        self.checks.append(Check(name, str(value), str(expected), ok))

    def figure(self, name: str, value: object) -> None:
        self.checks.append(Check(name, str(value), "", None))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  {text}", flush=True)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        vwidth = max(8, *(len(c.value) for c in self.checks))
        lines = [f"{'check':<{width}}  {'value':>{vwidth}}  {'expected':<10}  ok"]
        lines.append("-" * len(lines[0]))
        for c in self.checks:
            mark = "" if c.ok is None else ("yes" if c.ok else "NO")
            lines.append(f"{c.name:<{width}}  {c.value:>{vwidth}}  {c.expected:<10}  {mark}")
        return "\n".join(lines)


# -- 1. kill -9 ------------------------------------------------------------------------------------


@dataclass
class KillTotals:
    rounds: int = 0
    kills: int = 0
    campaigns: int = 0
    redone: int = 0
    lost: int = 0
    duplicated: int = 0
    different: int = 0
    extra: int = 0
    leaked: int = 0
    leaked_unrecoverable: int = 0
    orphans: int = 0
    stale_after: int = 0
    unfinished: int = 0


def attack_kills(
    h: Harness,
    study: Path,
    reference_db: Path,
    reference_wall: float,
    startup: float,
    planned: int,
    args: argparse.Namespace,
    rng: random.Random,
    report: Report,
) -> KillTotals:
    print(
        f"1. kill -9 of `xmodal run -j {args.workers}` at {args.kills} random moments", flush=True
    )
    reference = results(reference_db)
    totals = KillTotals()
    max_rounds = 4 * args.kills + 4
    # The machine's load changes how long a run takes: a round that ends before its kill
    # shrinks the window of the next ones, a round that is killed widens it a little.
    scale = 1.0
    while totals.kills < args.kills and totals.rounds < max_rounds:
        totals.campaigns += 1
        db = h.root / f"kill-{totals.campaigns:02d}.duckdb"
        seen: dict[str, object] = {}
        kills_here = 0
        while kills_here < args.kills_per_db and totals.kills < args.kills:
            totals.rounds += 1
            left = 1.0 - len(seen) / planned
            window = startup + left * max(0.0, reference_wall - startup)
            delay = rng.uniform(0.0, max(window * scale, 0.5))
            inv = h.start("run", study, "--db", db, "-j", args.workers, name="kill")
            assert inv.process is not None
            try:
                inv.process.wait(delay)
                killed = False
            except subprocess.TimeoutExpired:
                os.kill(inv.process.pid, signal.SIGKILL)
                killed = True
            h.wait(inv)
            orphans = wait_for_session_to_end(inv.process.pid, args.grace)
            kill_pids(orphans)
            leaked = temp_dirs(inv.tmpdir)
            if leaked:
                # Would the next process pool on this machine remove them (owner dead)?
                from xmodal.executors import remove_stale_temp_dirs

                removed = remove_stale_temp_dirs(inv.tmpdir)
                totals.leaked_unrecoverable += len(leaked) - len(removed)
            now = finished_runs(db)
            redone = redone_runs(seen, now)
            seen.update({run: at for run, at in now.items() if run not in seen})
            totals.redone += len(redone)
            totals.leaked += len(leaked)
            totals.orphans += len(orphans)
            if killed:
                kills_here += 1
                totals.kills += 1
                scale = min(1.0, scale * 1.1)
            else:
                scale *= 0.7
            report.note(
                f"campaign {totals.campaigns} round {totals.rounds}: "
                f"{'killed' if killed else 'ended (code ' + str(inv.code) + ')'} at "
                f"{delay:.1f} s; {len(now)}/{planned} finished; redone {len(redone)}, "
                f"leaked dirs {len(leaked)}, orphans {len(orphans)}"
            )
            if len(now) == planned:
                break  # nothing left to interrupt: a fresh database for the next kills
        final = h.run("run", study, "--db", db, "-j", args.workers, name="final")
        now = finished_runs(db)
        totals.redone += len(redone_runs(seen, now))
        totals.leaked += len(temp_dirs(final.tmpdir))
        totals.unfinished += planned - len(now)
        totals.stale_after += running_rows(db)
        cmp = compare_results(reference, results(db))
        for name in ("lost", "duplicated", "different", "extra"):
            setattr(totals, name, getattr(totals, name) + getattr(cmp, name))
        report.note(
            f"campaign {totals.campaigns} final run: code {final.code}, "
            f"{len(now)}/{planned} finished; lost {cmp.lost}, duplicated {cmp.duplicated}, "
            f"different values {cmp.different}"
        )
    report.figure("kill -9: kills delivered / rounds / databases",
                  f"{totals.kills}/{totals.rounds}/{totals.campaigns}")  # fmt: skip
    report.invariant("kill -9: kills delivered", totals.kills, f">= {args.kills}",
                     totals.kills >= args.kills)  # fmt: skip
    report.invariant("lost results", totals.lost, 0, totals.lost == 0)
    report.invariant("duplicated results", totals.duplicated, 0, totals.duplicated == 0)
    report.invariant("results differing from reference", totals.different, 0, totals.different == 0)
    report.invariant("finished runs redone", totals.redone, 0, totals.redone == 0)
    report.invariant(
        "runs unfinished after final run", totals.unfinished, 0, totals.unfinished == 0
    )
    report.invariant(
        "'running' rows after final run", totals.stale_after, 0, totals.stale_after == 0
    )
    report.invariant("leaked temp dirs (after kill + grace)", totals.leaked, 0, totals.leaked == 0)
    report.invariant("leaked temp dirs the next pool cannot remove", totals.leaked_unrecoverable, 0,
                     totals.leaked_unrecoverable == 0)  # fmt: skip
    report.invariant(
        "orphaned workers (after kill + grace)", totals.orphans, 0, totals.orphans == 0
    )
    return totals


# -- 2. readers holding the database ---------------------------------------------------------------


def attack_readers(
    h: Harness, study: Path, reference_db: Path, planned: int, args: argparse.Namespace,
    report: Report,
) -> None:  # fmt: skip
    print(f"2. readers holding the database for {args.hold:g} s while the study runs", flush=True)
    db = h.root / "busy.duckdb"
    runner = h.start("run", study, "--db", db, "-j", args.workers, name="busy-run")
    assert runner.process is not None
    wait_until_locked(runner.process, db, 120.0)
    time.sleep(1.0)  # let it record the study and start its pool
    held_at = time.monotonic()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db), str(args.hold)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert reader.stdout is not None
    reader_ok = reader.stdout.readline().strip() == "holding"
    query = h.start("query", LONG_QUERY, "--db", db, "--timeout", "0", name="long-query")
    assert query.process is not None
    # Ctrl-C is meant for a running query, not for one still importing: wait until it has the
    # database open (at most two minutes), whatever the hold.
    opened = wait_until_open(query.process, db, 120.0)
    time.sleep(max(0.0, held_at + args.hold - time.monotonic(), opened + 1.0 - time.monotonic()))
    query_alive = query.process.poll() is None
    stop = time.monotonic()
    if query_alive:
        os.kill(query.process.pid, signal.SIGINT)  # Ctrl-C
    try:
        query.process.wait(30)
        query_stop = time.monotonic() - stop
    except subprocess.TimeoutExpired:
        query_stop = math.inf
        os.kill(query.process.pid, signal.SIGABRT)  # the log then shows where it hangs
        try:
            query.process.wait(10)
        except subprocess.TimeoutExpired:
            kill_pids([query.process.pid])
            query.process.wait()
        report.note(f"the query ignored Ctrl-C; its threads at SIGABRT: {query.log}")
    reader.wait(60)
    code = h.wait(runner)
    recorded = len(finished_runs(db))
    waiting, bad = spool_entries(db)
    report.note(
        f"study exit code {code} after {runner.wall:.0f} s; {recorded}/{planned} recorded, "
        f"{waiting} spooled; reader held it: {reader_ok}; query alive at the end of the hold: "
        f"{query_alive}, stopped {query_stop:.1f} s after Ctrl-C (code {query.code})"
    )
    resume = h.run("run", study, "--db", db, "-j", args.workers, name="busy-resume")
    now = finished_runs(db)
    cmp = compare_results(results(reference_db), results(db))
    lost_runs = planned - len(now)
    waiting_after, bad_after = spool_entries(db)
    report.note(
        f"next run: code {resume.code}; {len(now)}/{planned} finished, spool {waiting_after}; "
        f"lost results {cmp.lost}, duplicated {cmp.duplicated}"
    )
    report.invariant("busy db: study exit code", code, 0, code == 0)
    report.figure("busy db: runs recorded / spooled / planned at study end",
                  f"{recorded}/{waiting}/{planned}")  # fmt: skip
    report.invariant("busy db: recorded + spooled = planned", recorded + waiting, planned,
                     recorded + waiting == planned)  # fmt: skip
    report.invariant("busy db: reader and query held it", reader_ok and query_alive, True,
                     reader_ok and query_alive)  # fmt: skip
    report.invariant("busy db: query stopped by Ctrl-C (s)", f"{query_stop:.1f}", "< 10",
                     query_stop < 10)  # fmt: skip
    report.invariant("busy db: lost runs after next run", lost_runs, 0, lost_runs == 0)
    report.invariant("busy db: lost / duplicated results", f"{cmp.lost}/{cmp.duplicated}", "0/0",
                     cmp.lost == 0 and cmp.duplicated == 0)  # fmt: skip
    report.invariant("busy db: spool left / bad entries", f"{waiting_after}/{bad + bad_after}",
                     "0/0", waiting_after == 0 and bad + bad_after == 0)  # fmt: skip


# -- 3. a second runner through another spelling of the database -----------------------------------


def attack_second_runner(
    h: Harness, slow_study: Path, args: argparse.Namespace, report: Report
) -> None:
    print(
        "3. a second runner through a symlink (and a hard link, dir/..) while one runs", flush=True
    )
    home = h.root / "second"
    (home / "sub").mkdir(parents=True)
    db = home / "real.duckdb"
    first = h.start("run", slow_study, "--db", db, "-j", args.workers, name="first-runner")
    assert first.process is not None
    wait_until_locked(first.process, db, 120.0)
    (home / "link.duckdb").symlink_to(db)
    os.link(db, home / "hard.duckdb")
    spellings = {"symlink": home / "link.duckdb", "hard link": home / "hard.duckdb",
                 "dir/..": home / "sub" / ".." / "real.duckdb"}  # fmt: skip
    if args.quick:
        spellings = {"symlink": spellings["symlink"]}
    refused = double = inconclusive = 0
    for label, path in spellings.items():
        second = h.run("run", slow_study, "--db", path, "-j", "1", name="second-runner")
        overlapped = first.process.poll() is None
        is_refused = second.code != 0 and "in use" in second.output
        refused += is_refused
        double += overlapped and not is_refused
        inconclusive += not overlapped
        report.note(
            f"second runner via {label}: code {second.code}, "
            f"{'refused (in use)' if is_refused else 'NOT refused'}, first still running: "
            f"{overlapped}, {second.wall:.1f} s"
        )
    # SIGTERM must stop the first runner like Ctrl-C.
    terminated = first.process.poll() is None
    if terminated:
        os.kill(first.process.pid, signal.SIGTERM)
    code = h.wait(first, 120)
    orphans = wait_for_session_to_end(first.process.pid, args.grace)
    kill_pids(orphans)
    stale = running_rows(db)
    leaked = len(temp_dirs(first.tmpdir))
    report.note(
        f"first runner after SIGTERM: code {code}, 'running' rows {stale}, temp dirs {leaked}, "
        f"orphans {len(orphans)}"
    )
    n = len(spellings)
    report.invariant("second runner refused", f"{refused}/{n}", f"{n}/{n}", refused == n)
    report.invariant("symlink double-run", double, 0, double == 0 and inconclusive == 0)
    report.invariant("SIGTERM: exit 130, no running row/dir/orphan",
                     f"{code}/{stale}/{leaked}/{len(orphans)}", "130/0/0/0",
                     terminated and code == 130 and stale == leaked == len(orphans) == 0)  # fmt: skip


# -- 4. writing queries ----------------------------------------------------------------------------


def writing_queries(db: Path, hard_link: Path, out: Path) -> dict[str, str]:
    return {
        "ATTACH hard link READ_WRITE; DELETE": f"ATTACH '{hard_link}' AS w (READ_WRITE); DELETE FROM w.results",
        "ATTACH hard link READ_WRITE": f"ATTACH '{hard_link}' AS w (READ_WRITE)",
        "ATTACH same file READ_WRITE": f"ATTACH '{db}' AS w2",
        "DELETE FROM results": "DELETE FROM results",
        "UPDATE runs": "UPDATE runs SET status = 'pending'",
        "CREATE TABLE AS": "CREATE TABLE x AS SELECT 1 AS a",
        "COPY TO csv": f"COPY results TO '{out / 'copy.csv'}'",
        "COPY (query) TO parquet": f"COPY (SELECT 1) TO '{out / 'copy.parquet'}' (FORMAT parquet)",
        "EXPORT DATABASE": f"EXPORT DATABASE '{out / 'export'}'",
        "SET threads": "SET threads = 1",
        "SET enable_external_access": "SET enable_external_access = true",
        "PRAGMA": "PRAGMA disable_checkpoint_on_shutdown",
        "CHECKPOINT": "CHECKPOINT",
        "VACUUM": "VACUUM",
        "read_text('/etc/passwd')": "SELECT * FROM read_text('/etc/passwd')",
        "read_csv('/etc/passwd')": "SELECT * FROM read_csv('/etc/passwd')",
        "FROM '/etc/passwd' (replacement scan)": "SELECT * FROM '/etc/passwd'",
        "glob('/etc/*')": "SELECT * FROM glob('/etc/*')",
        "INSTALL / LOAD extension": "LOAD httpfs",
        "SELECT; DELETE (two statements)": "SELECT 1; DELETE FROM results",
        "SELECT; COPY (two statements)": f"SELECT 1; COPY results TO '{out / 'two.csv'}'",
    }


def attack_queries(
    h: Harness, reference_db: Path, args: argparse.Namespace, report: Report
) -> None:
    print("4. writing queries through `xmodal query`", flush=True)
    home = h.root / "queries"
    out = home / "out"
    out.mkdir(parents=True)
    db = home / "q.duckdb"
    shutil.copyfile(reference_db, db)
    hard = home / "q-hard.duckdb"
    os.link(db, hard)
    before = file_digest(db)
    count_before = read_db(db, "SELECT count(*) FROM results")[0][0]
    queries = writing_queries(db, hard, out)
    if args.quick:
        queries = {k: queries[k] for k in list(queries)[:1]}
    control_sql = "SELECT count(*) AS n FROM results"
    pending = [(label, sql) for label, sql in queries.items()] + [("(control) SELECT", control_sql)]
    done: dict[str, Invocation] = {}
    running: list[tuple[str, Invocation]] = []
    while pending or running:  # a few at a time: each command's start-up is seconds of CPU
        while pending and len(running) < 4:
            label, sql = pending.pop(0)
            running.append((label, h.start("query", sql, "--db", db, "--format", "csv",
                                           name="write-query")))  # fmt: skip
        label, inv = running.pop(0)
        h.wait(inv, 120)
        done[label] = inv
    control = done.pop("(control) SELECT")
    refused = 0
    for label, inv in done.items():
        ok = inv.code not in (0, None) and TRACEBACK not in inv.output
        refused += ok
        first_line = next((ln for ln in inv.output.splitlines() if ln.strip()), "")
        report.note(
            f"{'refused' if ok else 'ACCEPTED'} (code {inv.code}) {label}: {first_line[:110]}"
        )
    after = file_digest(db)
    count_after = read_db(db, "SELECT count(*) FROM results")[0][0]
    written = sorted(p.name for p in out.iterdir())
    control_ok = control.code == 0 and f"n\n{count_before}" in control.output.replace("\r", "")
    report.note(f"control SELECT: code {control.code}, results {count_before} -> {count_after}, "
                f"files written: {written or 'none'}")  # fmt: skip
    n = len(done)
    report.invariant("refused writes", f"{refused}/{n}", f"{n}/{n}", refused == n)
    report.invariant("database bytes unchanged (sha256)", before == after, True, before == after)
    report.invariant("files written by queries", len(written), 0, not written)
    report.invariant("control SELECT answered", control_ok, True, control_ok)


# -- 5. adversarial study files --------------------------------------------------------------------

# A valid small study as TOML text; the cases below edit its text.
BASE_2K = to_toml({
    "study": {"name": "adversarial", "seeds": [0]},
    "data": {"dataset": "synthetic", "params": {"n_items": 240, "dim_text": 16, "dim_image": 24}},
    "mapping": [{"name": "linear"}],
    "train": {"epochs": 1},
    "metric": [{"name": "mnno", "k": [1]}],
})  # fmt: skip


def adversarial_studies() -> dict[str, tuple[str, int]]:
    """name -> (study text of at most 2 KB, expected `xmodal validate` exit code)."""
    pad = 2048 - len(BASE_2K) - 16

    def valid_with(old: str, new: str) -> str:
        return BASE_2K.replace(old, new, 1)

    spaces = " " * pad
    grid_seeds = ", ".join(str(i) for i in range(120))
    grid_depths = ", ".join(str(i) for i in range(1, 60))
    grid_hidden = ", ".join(str(i) for i in range(1, 50))
    cases = {
        "spaces in a table header": (valid_with("[data.params]", f"[data{spaces}.params]"), 0),
        "spaces in an array-table header": (valid_with("[[mapping]]", f"[[{spaces}mapping]]"), 0),
        "spaces before a key's '='": (valid_with('name = "linear"', f'name{spaces}= "linear"'), 0),
        "spaces in an unclosed header": (f"[study{spaces}\nname = 'x'\n", 2),
        "spaces between dotted header parts": (
            valid_with("[data.params]", "[data" + " . " * (pad // 3 - 4) + ".params]"),
            2,
        ),
        "spaces then a comment": (BASE_2K + "#" + " " * pad + "\n", 0),
        "2,000 nested '['": ("x = " + "[" * 1000 + "]" * 1000 + "\n", 2),
        "unclosed nested '['": ("x = " + "[" * 2000 + "\n", 2),
        "deep inline tables": ("x = " + "{a=" * 400 + "1" + "}" * 400 + "\n", 2),
        "deep dotted table header": ("[" + "a." * 1000 + "a]\n", 2),
        "huge grid (seeds x depths x hidden)": (
            valid_with(
                'name = "linear"',
                f'name = "mlp"\ndepth = [{grid_depths}]\nhidden = [{grid_hidden}]',
            ).replace("seeds = [0]", f"seeds = [{grid_seeds}]"),
            2,
        ),
        "seed 2**31 (out of INT32)": (valid_with("seeds = [0]", "seeds = [2147483648]"), 2),
        "seed -1": (valid_with("seeds = [0]", "seeds = [-1]"), 2),
        "seed 10**20 (out of int64)": (
            valid_with("seeds = [0]", "seeds = [100000000000000000000]"),
            2,
        ),
        "[[study]] array of tables": (BASE_2K.replace("[study]", "[[study]]", 1), 2),
    }
    for name, (text, _) in cases.items():
        assert len(text.encode()) <= 2048, (name, len(text.encode()))
    return cases


def attack_study_files(h: Harness, args: argparse.Namespace, report: Report) -> None:
    print("5. adversarial study files (<= 2 KB) through `xmodal validate`", flush=True)
    home = h.root / "studies"
    home.mkdir()
    base = home / "base.toml"
    base.write_text(BASE_2K)
    baseline = h.run("validate", base, name="validate-base")
    report.note(f"baseline (a valid small study): code {baseline.code}, {baseline.wall:.1f} s")
    cases = adversarial_studies()
    if args.quick:
        cases = {k: cases[k] for k in ("spaces in an unclosed header",)}
    worst = ("", 0.0)
    unexpected = tracebacks = 0
    for i, (name, (text, expected)) in enumerate(cases.items()):
        path = home / f"case-{i:02d}.toml"
        path.write_text(text)
        inv = h.run("validate", path, name="validate", timeout=300)
        has_tb = TRACEBACK in inv.output
        tracebacks += has_tb
        unexpected += inv.code != expected
        if inv.wall > worst[1]:
            worst = (name, inv.wall)
        last = next((ln for ln in reversed(inv.output.splitlines()) if ln.strip()), "")
        report.note(
            f"{name} ({len(text.encode())} B): code {inv.code} (expected {expected}), "
            f"{inv.wall:.1f} s{', TRACEBACK' if has_tb else ''}: {last.strip()[:90]}"
        )
    limit = max(3 * baseline.wall, baseline.wall + 5.0)
    report.invariant("validate: exit codes as expected", f"{len(cases) - unexpected}/{len(cases)}",
                     f"{len(cases)}/{len(cases)}", unexpected == 0)  # fmt: skip
    report.invariant("validate: worst time (s)", f"{worst[1]:.1f}",
                     f"<= {limit:.1f}", worst[1] <= limit)  # fmt: skip
    report.figure("validate: baseline time (s)", f"{baseline.wall:.1f}")
    report.note(f"slowest case: {worst[0]} ({worst[1]:.1f} s)")


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=24, help="kill -9s to deliver (default 24)")
    parser.add_argument("--kills-per-db", type=int, default=4,
                        help="kills before a database is finished and compared (default 4)")  # fmt: skip
    parser.add_argument("--hold", type=float, default=90.0,
                        help="seconds the readers hold the database (default 90)")  # fmt: skip
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds a killed run's workers get to exit (default 10)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--seeds", type=int, default=6, help="study seeds (8 runs each)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only", default="1,2,3,4,5", help="attacks to run, e.g. 1,4")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this directory and keep it (default: a temporary one)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="a small configuration, about a minute (tests/test_attack.py)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.kills, args.kills_per_db, args.hold, args.seeds, args.epochs = 1, 1, 3.0, 1, 5
    return args


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="attack-harness-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Started in the background (`cmd &`), this process and so every command it starts would
    # ignore SIGINT, and the Ctrl-C sent to `xmodal query` below would be lost: handle it here,
    # so that children start with the default disposition.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    rng = random.Random(args.seed)
    started = time.monotonic()
    load = os.getloadavg()
    print(f"attack harness {datetime.datetime.now():%Y-%m-%d %H:%M}; "
          f"{os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    report = Report()
    with workdir(args.keep) as root:
        h = Harness(root)
        study = root / "attack.toml"
        study.write_text(study_text(args.seeds, args.epochs, 600 if not args.quick else 240))
        slow = root / "slow.toml"
        slow.write_text(study_text(args.seeds, args.epochs * 50, 600))
        planned = 8 * args.seeds
        reference_db = root / "reference.duckdb"
        if only & {1, 2, 4}:
            probe = h.run("validate", study, name="validate-study")
            ref = h.run("run", study, "--db", reference_db, "-j", args.workers, name="reference")
            n_ref = len(finished_runs(reference_db))
            print(f"reference: {n_ref}/{planned} runs in {ref.wall:.1f} s (code {ref.code})",
                  flush=True)  # fmt: skip
            report.figure("study: runs / reference wall time (s)", f"{planned} / {ref.wall:.1f}")
            # Start-up (imports, data, pool) = wall time not spent between the first run's start
            # and the last run's end: kills are spread over start-up plus the work still left.
            span = read_db(
                reference_db, "SELECT epoch(max(finished_at) - min(started_at)) FROM runs"
            )
            startup = max(probe.wall, ref.wall - float(span[0][0] or 0.0))
            if ref.code != 0 or n_ref != planned:
                print(ref.output)
                report.invariant("reference run", ref.code, 0, False)
                only -= {1, 2, 4}
        if 1 in only:
            print(f"start-up of a run (before its first run starts): {startup:.1f} s", flush=True)
            attack_kills(h, study, reference_db, ref.wall, startup, planned, args, rng, report)
        if 2 in only:
            attack_readers(h, study, reference_db, planned, args, report)
        if 3 in only:
            attack_second_runner(h, slow, args, report)
        if 4 in only:
            attack_queries(h, reference_db, args, report)
        if 5 in only:
            attack_study_files(h, args, report)
        with_tb = h.tracebacks()
        for inv in with_tb:
            report.note(f"traceback in `xmodal {' '.join(inv.args)[:80]}` ({inv.log.name})")
            print(textwrap.indent(inv.output[-3000:], "    "))
        report.invariant("tracebacks in any output", f"{len(with_tb)} of {len(h.invocations)}",
                         0, not with_tb)  # fmt: skip
    load = os.getloadavg()
    print()
    print(report.table())
    print(f"\n{len(h.invocations)} xmodal commands in {time.monotonic() - started:.0f} s; "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    if report.failed:
        print(f"FAILED: {', '.join(c.name.strip() for c in report.failed)}")
        return 1
    print("all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
