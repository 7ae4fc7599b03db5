"""Deploy-phase benchmark (issue #27): a new required column, filled from existing rows, and an
old column dropped, on a table of `--rows` rows, while the old release's app (a writer and a
reader that know nothing of the new column) and then the new release's keep running.

    .venv/bin/python benchmarks/zero_downtime/phases.py [--rows 4000000] [--database-url URL]

    side      step                         command                     app serving
    stock     deploy (before the rollout)  alembic upgrade head        old release
    template  deploy (before the rollout)  make migrate phase=pre      old release
    template  backfill, until the rollout  make backfill               old release
    template  backfill, after the rollout  (the same command)          new release
    template  contract (after the rollout) make migrate phase=post     new release

The stock side is one revision as stock autogenerate writes it for the model change, with the
hand edits it needs to run on a table with rows (the column added nullable, an UPDATE, then NOT
NULL), run before the rollout. The template side is what a user does: edit the model, `make
migration` (which writes the pre and the post revision), then add `op.queue_backfill` to the pre
revision and `op.require_backfill` to the post one, as docs/deploy-phases.md says.

The table, the server and the project come from bench.py. Every statement the apps run is timed
and its outcome kept; a step's figures count the statements started from its command's start to
the next step's start. Printed side by side: each step's wall time, the old release's errors
(count, first message), the writer's worst and p99 latency, and its lock wait (the longest
stretch it was seen waiting for a lock), then whether issue #27's bounds hold.
"""

import argparse
import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import bench

# The model after the change: `balance` gone (the new release stops using it), `email` required.
NEW_MODELS = (
    bench.MODELS.replace(
        "    balance: int | None = Field(default=None, sa_type=sa.BigInteger)\n", ""
    )
    + "    email: str = Field(sa_type=sa.Text)\n"
)
STOCK_REVISION = f'''"""account: email required, balance dropped (stock)"""

import sqlalchemy as sa
from alembic import op

revision = "zdstock"
down_revision = {{down!r}}


def upgrade() -> None:
    # Autogenerate wrote add_column(nullable=False), which fails on a table with rows; the
    # usual hand edit: add it nullable, fill it, then make it NOT NULL.
    op.add_column("account", sa.Column("email", sa.Text(), nullable=True))
    op.execute("UPDATE account SET email = {bench.FILL} WHERE email IS NULL")
    op.alter_column("account", "email", existing_type=sa.Text(), nullable=False)
    op.drop_column("account", "balance")


def downgrade() -> None:
    pass
'''
QUEUE = f'    op.queue_backfill("account", {{"email": "{bench.FILL}"}}, where="email IS NULL")\n'
REQUIRE = '    op.require_backfill("account.email")\n'
JOB = "account.email"
SETTLE = 1.0  # seconds the apps run on after each command, before the next step starts
PRE_BOUND = 5.0  # "returns in seconds"
LOCK_BOUND = 0.15


@dataclass(frozen=True)
class Release:
    """An app release's statements: what its code knows of the table."""

    name: str
    insert: str
    update: str
    select: str


OLD = Release(
    "old",
    "INSERT INTO account (name, org_id) VALUES ($1, 1)",
    "UPDATE account SET balance = coalesce(balance, 0) + 1 WHERE id = $1",
    "SELECT id, name, org_id, balance FROM account WHERE id = $1",
)
NEW = Release(
    "new",
    "INSERT INTO account (name, org_id, email) VALUES ($1, 1, $1 || '@example.org')",
    "UPDATE account SET email = 'user' || id || '@example.org' WHERE id = $1",
    "SELECT id, name, org_id, email FROM account WHERE id = $1",
)


@dataclass
class Outcome:
    start: float
    seconds: float
    release: str
    writer: bool
    error: str | None


@dataclass
class App:
    """One release's writer (an INSERT and an UPDATE of a random row) or reader (a SELECT of a
    random row), one connection each, every 2 ms. An error is recorded and the loop goes on."""

    connect: dict[str, object]
    rows: int
    release: Release
    writer: bool
    outcomes: list[Outcome]
    lock_waits: list[float]
    stop: bool = False

    async def run(self) -> None:
        connection = await asyncpg.connect(**self.connect)
        watcher = None
        if self.writer:
            watcher = asyncio.create_task(
                bench.sample_lock_waits(
                    self.connect, connection.get_server_pid(), self.lock_waits, lambda: self.stop
                )
            )
        try:
            while not self.stop:
                if self.writer:
                    await self._timed(connection, "execute", self.release.insert, _name())
                    await self._timed(connection, "execute", self.release.update, self._row())
                else:
                    await self._timed(connection, "fetch", self.release.select, self._row())
                await asyncio.sleep(0.002)
        finally:
            if watcher is not None:
                self.stop = True
                await watcher
            await connection.close()

    def _row(self) -> int:
        return random.randint(1, self.rows)

    async def _timed(
        self, connection: asyncpg.Connection, method: str, sql: str, arg: object
    ) -> None:
        start = time.perf_counter()
        error = None
        try:
            await getattr(connection, method)(sql, arg)
        except asyncpg.PostgresError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.outcomes.append(
            Outcome(start, time.perf_counter() - start, self.release.name, self.writer, error)
        )


def _name() -> str:
    return f"new {random.randrange(10**9)}"


@dataclass
class Serving:
    """The apps of the release serving now: a writer and a reader."""

    connect: dict[str, object]
    rows: int
    outcomes: list[Outcome] = field(default_factory=list)
    lock_waits: list[float] = field(default_factory=list)
    apps: list[App] = field(default_factory=list)
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    def start(self, release: Release) -> None:
        self.apps = [
            App(self.connect, self.rows, release, writer, self.outcomes, self.lock_waits)
            for writer in (True, False)
        ]
        self.tasks = [asyncio.create_task(app.run()) for app in self.apps]

    async def stop(self) -> None:
        for app in self.apps:
            app.stop = True
        await asyncio.gather(*self.tasks)


@dataclass
class Step:
    side: str
    name: str
    command: str
    release: str
    seconds: float | None  # the command's wall time; None: the same command as the row above
    window: tuple[float, float]
    output: str = ""
    rows_done: tuple[int, int] | None = None  # the job's rows at the rollout and at the end


@dataclass
class Figures:
    ops: int
    old_errors: int
    first_error: str
    errors: int  # any release's
    kinds: dict[str, int]  # old-release errors by class
    worst: float
    p99: float
    lock_wait: float


def figures(step: Step, serving: Serving) -> Figures:
    start, end = step.window
    inside = [o for o in serving.outcomes if start <= o.start < end]
    writes = sorted(o.seconds for o in inside if o.writer)
    old_errors = [o.error for o in inside if o.release == "old" and o.error]
    return Figures(
        len(inside),
        len(old_errors),
        old_errors[0] if old_errors else "",
        sum(1 for o in inside if o.error),
        dict(Counter(e.split(":", 1)[0] for e in old_errors)),
        writes[-1] if writes else 0.0,
        writes[min(len(writes) - 1, int(len(writes) * 0.99))] if writes else 0.0,
        bench.longest_stretch([t for t in serving.lock_waits if start <= t < end]),
    )


async def timed_command(
    project: Path, env: dict[str, str], *args: str, check: bool = True
) -> tuple[float, str]:
    """Run a command while the apps go on; its wall time and output. A failure stops the run,
    unless not `check`: then the output starts with FAILED."""
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *args, cwd=project, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    seconds = time.perf_counter() - start
    text = output.decode()
    if process.returncode != 0:
        if not check:
            return seconds, f"FAILED {text}"
        raise RuntimeError(f"{' '.join(args)} failed after {seconds:.1f}s:\n{text[-3000:]}")
    return seconds, text


async def reset(connect: dict[str, object]) -> None:
    """The table as bench.py built it: `balance` back (nullable, no default: no rewrite), the
    job table gone; then bench.reset_table drops the rest and vacuums."""
    connection = await asyncpg.connect(**connect)
    try:
        await connection.execute(
            "DROP TABLE IF EXISTS alembic_version_backfills; "
            "ALTER TABLE account ADD COLUMN IF NOT EXISTS balance bigint"
        )
    finally:
        await connection.close()
    await bench.reset_table(connect)


def start_side(project: Path, env: dict[str, str]) -> str:
    """The project at the template's head with the benchmark's models: its revision id."""
    versions = project / "src" / "my_service" / "migrations" / "versions"
    for old in versions.glob("zd_*.py"):
        old.unlink()
    (project / "src" / "my_service" / "models" / "account.py").write_text(
        bench.MODELS, encoding="utf-8"
    )
    bench.run(project, env, ".venv/bin/alembic", "upgrade", "head")
    bench.run(project, env, "make", "check")  # the models match the table: nothing to generate
    return bench.run(project, env, ".venv/bin/alembic", "heads").split()[0]


def write_template_revisions(project: Path, env: dict[str, str]) -> None:
    """Edit the model, `make migration`, then add the backfill where the docs say."""
    versions = project / "src" / "my_service" / "migrations" / "versions"
    (project / "src" / "my_service" / "models" / "account.py").write_text(
        NEW_MODELS, encoding="utf-8"
    )
    before = set(versions.glob("*.py"))
    bench.run(project, env, "make", "migration", "msg=account email")
    new = set(versions.glob("*.py")) - before
    posts = [p for p in new if p.name.endswith("_post.py")]
    pres = [p for p in new if p not in posts]
    if len(posts) != 1 or len(pres) != 1:
        raise RuntimeError(f"make migration wrote {sorted(p.name for p in new)}, not pre + post")
    pre, post = pres[0].read_text(encoding="utf-8"), posts[0].read_text(encoding="utf-8")
    for text, expected in ((pre, "op.add_column("), (post, "op.set_not_null("),
                           (post, "op.drop_column(")):  # fmt: skip
        if expected not in text:
            raise RuntimeError(f"make migration wrote no {expected}:\n{pre}\n{post}")
    # The pre revision queues the job at the end of its upgrade(); the post one requires it
    # first, before set_not_null reads the column.
    pre = pre.replace("\n\n\ndef downgrade", "\n" + QUEUE + "\n\ndef downgrade", 1)
    post = post.replace("def upgrade() -> None:\n", "def upgrade() -> None:\n" + REQUIRE, 1)
    if QUEUE not in pre or REQUIRE not in post:
        raise RuntimeError(f"could not add the backfill:\n{pre}\n{post}")
    for path, text in ((pres[0], pre), (posts[0], post)):
        (versions / f"zd_{path.name}").write_text(text, encoding="utf-8")
        path.unlink()


async def rows_done(connect: dict[str, object]) -> int:
    connection = await asyncpg.connect(**connect)
    try:
        done = await connection.fetchval(
            "SELECT rows_done FROM alembic_version_backfills WHERE name = $1", JOB
        )
        return int(done or 0)
    except asyncpg.UndefinedTableError:  # no job queued: the revisions were changed by hand
        return 0
    finally:
        await connection.close()


async def check_contracted(connect: dict[str, object]) -> None:
    """After phase=post: `email` NOT NULL with no NULL left, `balance` gone; else stop."""
    connection = await asyncpg.connect(**connect)
    try:
        columns = dict(
            await connection.fetch(
                "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = 'account'::regclass"
                " AND attnum > 0 AND NOT attisdropped"
            )
        )
        nulls = await connection.fetchval("SELECT count(*) FROM account WHERE email IS NULL")
    finally:
        await connection.close()
    if columns.get("email") is not True or "balance" in columns or nulls:
        raise RuntimeError(f"phase=post left account as {columns}, {nulls} NULL emails")


async def run_side(
    side: str, project: Path, url: str, connect: dict[str, object], rows: int, rollout_at: float
) -> tuple[list[Step], Serving]:
    env = bench.env_for(url)
    await reset(connect)
    down = start_side(project, env)
    versions = project / "src" / "my_service" / "migrations" / "versions"
    if side == "stock":
        (versions / "zd_stock.py").write_text(STOCK_REVISION.format(down=down), encoding="utf-8")
    else:
        write_template_revisions(project, env)
    serving = Serving(connect, rows)
    serving.start(OLD)
    steps: list[Step] = []
    await asyncio.sleep(SETTLE)  # the apps run alone for a moment first
    try:
        start = time.perf_counter()
        if side == "stock":
            seconds, out = await timed_command(project, env, ".venv/bin/alembic", "upgrade", "head")
            await asyncio.sleep(SETTLE)
            steps.append(
                Step(side, "deploy", "alembic upgrade head", "old", seconds,
                     (start, time.perf_counter()), out)
            )  # fmt: skip
            return steps, serving
        seconds, out = await timed_command(project, env, "make", "migrate", "phase=pre")
        await asyncio.sleep(SETTLE)
        steps.append(
            Step(side, "deploy", "make migrate phase=pre", "old", seconds,
                 (start, time.perf_counter()), out)
        )  # fmt: skip
        start = time.perf_counter()
        backfill = asyncio.create_task(timed_command(project, env, "make", "backfill"))
        # The rollout happens while the job runs, so every old instance is gone before its last
        # batch: while the old release inserts rows without an email, the job either chases
        # them or ends with some left NULL, and phase=post refuses (README.md).
        while not backfill.done() and await rows_done(connect) < rows * rollout_at:
            await asyncio.wait({backfill}, timeout=0.2)
        rollout = time.perf_counter()
        at_rollout = await rows_done(connect)
        await serving.stop()
        serving.start(NEW)
        seconds, out = await backfill
        await asyncio.sleep(SETTLE)
        steps.append(
            Step(side, "backfill, until the rollout", "make backfill", "old", seconds,
                 (start, rollout), out, (at_rollout, await rows_done(connect)))
        )  # fmt: skip
        steps.append(
            Step(side, "backfill, after the rollout", "(the same)", "new", None,
                 (rollout, time.perf_counter()))
        )  # fmt: skip
        start = time.perf_counter()
        # A refusal here is a result (the bounds say NOT met), not a crash of the benchmark.
        seconds, out = await timed_command(
            project, env, "make", "migrate", "phase=post", check=False
        )
        await asyncio.sleep(SETTLE)
        if not out.startswith("FAILED"):
            await check_contracted(connect)
        steps.append(
            Step(side, "contract", "make migrate phase=post", "new", seconds,
                 (start, time.perf_counter()), out)
        )  # fmt: skip
        return steps, serving
    finally:
        await serving.stop()
        for step in steps:
            bench.log(f"{side:8} {step.name:28} {step.seconds or 0.0:7.2f}s")
        for old in versions.glob("zd_*.py"):
            old.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--database-url", help="postgresql://user@host:port (a server of yours)")
    parser.add_argument("--database", default=bench.DATABASE, help="database holding the table")
    parser.add_argument(
        "--rollout-at",
        type=float,
        default=0.5,
        help="share of the table's rows the backfill has done when the old release is replaced",
    )
    args = parser.parse_args()
    if not 0 < args.rollout_at < 1:
        parser.error("--rollout-at: between 0 and 1 (the rollout ends before the backfill)")
    admin, url, handle = bench.open_server(args.database_url, args.database)
    connect = {**admin, "database": args.database}
    try:
        asyncio.run(bench.ensure_database(admin, args.database))
        asyncio.run(bench.build_table(connect, args.rows))
        bench.log("rendering and installing the project ...")
        project = bench.render_and_install()
        load = os.getloadavg()[0]
        sides = {}
        for side in ("stock", "template"):
            bench.log(f"{side} ...")
            sides[side] = asyncio.run(
                run_side(side, project, url, connect, args.rows, args.rollout_at)
            )
        asyncio.run(reset(connect))  # leave the table as bench.py expects it
        report(sides, args.rows, (load, os.getloadavg()[0]))
    finally:
        if handle is not None:
            handle.cleanup()  # type: ignore[attr-defined]


def report(
    sides: dict[str, tuple[list[Step], Serving]], rows: int, loads: tuple[float, float]
) -> None:
    print(f"\n{rows} rows; each release: a writer (INSERT + UPDATE of a random row) and a")
    print(
        f"reader (SELECT of a random row), 2 ms apart; load average {loads[0]:.1f} at the start,"
        f" {loads[1]:.1f} at the end"
    )
    print(
        "\n| step | app | stock: command | time | errors | worst write | p99 "
        "| lock wait | template: command | time | errors | worst write | p99 "
        "| lock wait |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    notes = []
    results = {
        side: [(step, figures(step, serving)) for step in steps]
        for side, (steps, serving) in sides.items()
    }
    for side, pairs in results.items():
        for step, f in pairs:
            if f.first_error:
                kinds = ", ".join(f"{n} {kind}" for kind, n in f.kinds.items())
                first = f.first_error.splitlines()[0]
                notes.append(f"{side}, {step.name}: {kinds}; first: {first}")
            if f.errors > f.old_errors:
                notes.append(f"{side}, {step.name}: {f.errors - f.old_errors} new-release errors")
    stock = dict(enumerate(results["stock"]))
    for n, (step, f) in enumerate(results["template"]):
        # The stock revision did it all in its deploy step.
        cells = cells_of(*stock[n]) if n in stock else "| (in its deploy step) | | | | | "
        print(f"| {step.name} | {step.release} {cells}{cells_of(step, f)}|")
    print("\nerrors:" if notes else "\nno errors")
    for line in notes:
        print(f"  {line}")
    template = results["template"]
    errors = sum(f.errors for _, f in template)
    lock = max(f.lock_wait for _, f in template)
    pre = template[0][0].seconds or 0.0
    backfill = template[1][0].seconds or 0.0
    print("\nissue #27's bounds, template side:")
    print(f"  errors in the apps' queries: {errors}: {verdict(errors == 0)} (0)")
    post = template[-1][0].output
    if post.startswith("FAILED"):
        reason = next((line for line in post.splitlines() if "FAILED:" in line), post[-300:])
        print(f"  make migrate phase=post: NOT met, it failed: {reason}")
    print(
        f"  writer lock wait, longest in any step: {lock * 1000:.0f} ms: "
        f"{verdict(lock <= LOCK_BOUND)} (at most {LOCK_BOUND * 1000:.0f} ms)"
    )
    print(
        f"  phase=pre {pre:.2f} s, make backfill {backfill:.2f} s after it: "
        f"{verdict(pre <= PRE_BOUND < backfill)} (pre at most {PRE_BOUND:.0f} s, the long part "
        "in the backfill)"
    )
    job = template[1][0]
    if job.rows_done is not None and job.rows_done[1] > job.rows_done[0] > 0:
        (half, total), (first, second) = job.rows_done, (job.window, template[2][0].window)
        print(
            f"  the backfill's rate: {half / (first[1] - first[0]):,.0f} rows/s over its first "
            f"{half:,} rows, {(total - half) / (second[1] - second[0] - SETTLE):,.0f} rows/s "
            f"over the other {total - half:,}"
        )
    step, f = results["stock"][0]
    deploy = step.seconds or 0.0
    print(
        f"\nstock: its one revision held the deploy {deploy:.2f} s ({deploy / pre:.1f}x the "
        f"template's phase=pre), writer lock wait {f.lock_wait * 1000:.0f} ms, "
        f"{f.old_errors} old-release errors"
    )


def cells_of(step: Step, f: Figures) -> str:
    time_ = "" if step.seconds is None else f"{step.seconds:.2f} s"
    return (
        f"| `{step.command}` | {time_} | {f.errors} of {f.ops} | {f.worst * 1000:.0f} ms "
        f"| {f.p99 * 1000:.1f} ms | {f.lock_wait * 1000:.0f} ms "
    )


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    main()
