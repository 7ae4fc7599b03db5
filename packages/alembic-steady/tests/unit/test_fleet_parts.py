"""fleet/ without a server: what a targets line means, a pod's share, the rollout's groups, and
the report. The runs are the live tiers' (tests/postgresql/test_pg_fleet.py, mysql/)."""

import json
from pathlib import Path

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from alembic_steady.fleet import report
from alembic_steady.fleet.report import Outcome
from alembic_steady.fleet.rollout import Policy, waves
from alembic_steady.fleet.targets import Target, from_file, parse, parse_all, share

BASE = make_url("postgresql+asyncpg://app:s3cret@db.internal:5432/shop")
MYSQL_BASE = make_url("mysql+asyncmy://app:s3cret@db.internal:3306/shop")


def test_a_schema_line_is_a_tenant_of_the_configured_database() -> None:
    assert parse("schema=acme", BASE, "postgresql") == Target(BASE, "acme", "schema=acme")
    assert parse("  acme \n", BASE, "postgresql") == Target(BASE, "acme", "schema=acme")
    assert parse("schema = Acme EU", BASE, "postgresql").schema == "Acme EU"


def test_a_database_line_is_a_database_on_the_configured_server() -> None:
    target = parse("database=eu", BASE, "postgresql")
    assert target == Target(BASE.set(database="eu"), None, "database=eu")
    assert parse("eu", MYSQL_BASE, "mysql") == Target(
        MYSQL_BASE.set(database="eu"), None, "database=eu"
    )


def test_a_url_line_runs_on_the_async_driver_and_is_labelled_without_its_password() -> None:
    target = parse("postgres://ops:hunter2@eu.internal/shop?sslmode=require", BASE, "postgresql")
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.password == "hunter2" and target.url.query == {"sslmode": "require"}
    assert target.schema is None
    assert target.label == "postgres://ops:***@eu.internal/shop?sslmode=require"
    assert parse("mysql://ops@eu.internal/shop", BASE, "postgresql").url.drivername == (
        "mysql+aiomysql"
    )


@pytest.mark.parametrize(
    ("line", "dialect", "says"),
    [
        ("flavour=x", "postgresql", "expected schema=NAME, database=NAME, NAME or a database URL"),
        ("=acme", "postgresql", "expected schema=NAME"),
        ("schema=acme", "mysql", "schema= targets are PostgreSQL's: on MySQL name a database="),
        ("sqlite://x.db", "postgresql", "a URL no dialect takes"),
        ("postgresql://[bad", "postgresql", "a URL no dialect takes"),
    ],
)
def test_a_bad_line_is_named_by_its_number_and_never_echoed(
    line: str, dialect: str, says: str
) -> None:
    with pytest.raises(CommandError) as refused:
        parse_all(["# tenants", "", "ok", f"{line}:pw"], BASE, dialect, "targets.txt")
    message = str(refused.value)
    assert message.startswith(f"targets.txt, line 4: {says}")
    assert ":pw" not in message


def test_comments_and_blank_lines_are_skipped_and_a_repeat_is_refused() -> None:
    lines = ["# eu", "", "acme", "  # moved", "globex"]
    assert [t.label for t in parse_all(lines, BASE, "postgresql", "f")] == [
        "schema=acme",
        "schema=globex",
    ]
    with pytest.raises(CommandError, match=r"^f, line 3: schema=acme is line 1's target too"):
        parse_all(["acme", "globex", "schema=acme"], BASE, "postgresql", "f")
    # Another server's database of the same name is another target.
    assert len(parse_all(["database=a", "postgresql://x@other/a"], BASE, "postgresql", "f")) == 2


def test_a_targets_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^Cannot read the targets file .*none: No such file"):
        from_file(tmp_path / "none", BASE, "postgresql")
    (tmp_path / "t").write_text("acme\n", encoding="utf-8")
    assert [t.schema for t in from_file(tmp_path / "t", BASE, "postgresql")] == ["acme"]


def test_each_pod_gets_every_kth_target_from_its_index() -> None:
    targets = [Target(BASE, f"t{n}", f"t{n}") for n in range(7)]
    shares = [share(targets, f"{index}/3") for index in range(3)]
    assert [[t.schema for t in part] for part in shares] == [
        ["t0", "t3", "t6"],
        ["t1", "t4"],
        ["t2", "t5"],
    ]
    assert share(targets, None) == targets


@pytest.mark.parametrize("shard", ["3/3", "1", "a/3", "-1/3", "1/0", "1/3/4"])
def test_a_shard_that_names_no_pod_is_refused(shard: str) -> None:
    with pytest.raises(CommandError, match=r"give I/K, the pod's index from 0"):
        share([Target(BASE, "a", "a")], shard)


def names(groups: list[tuple[str, list[Target]]]) -> list[tuple[str, list[str | None]]]:
    return [(name, [t.schema for t in group]) for name, group in groups]


def test_a_canary_goes_first_then_waves_of_the_given_size() -> None:
    pending = [Target(BASE, f"t{n}", f"t{n}") for n in range(6)]
    assert names(waves(pending, Policy(canary=1, wave=2))) == [
        ("canary", ["t0"]),
        ("wave 1", ["t1", "t2"]),
        ("wave 2", ["t3", "t4"]),
        ("wave 3", ["t5"]),
    ]
    assert names(waves(pending, Policy(canary=2, wave=0))) == [
        ("canary", ["t0", "t1"]),
        ("wave 1", ["t2", "t3", "t4", "t5"]),
    ]
    assert names(waves(pending, Policy(canary=0, wave=4))) == [
        ("wave 1", ["t0", "t1", "t2", "t3"]),
        ("wave 2", ["t4", "t5"]),
    ]


def test_a_canary_as_large_as_the_fleet_is_just_the_rollout() -> None:
    pending = [Target(BASE, f"t{n}", f"t{n}") for n in range(2)]
    assert names(waves(pending, Policy(canary=2))) == [("wave 1", ["t0", "t1"])]
    assert waves([], Policy()) == []


OUTCOMES = [
    Outcome("schema=acme", "upgraded", ("a1",), ("c3",), 0.25, None, "canary"),
    Outcome("schema=a|b", "failed", (), ("a1",), 1.5, "Revision b2 failed: x\nmore", "wave 1"),
    Outcome("database=eu", "at head", ("c3",), ("c3",)),
    Outcome("database=us", "unreadable", None, None, error="Cannot connect"),
]


def test_the_text_report_is_a_table_with_one_line_per_target_and_a_summary() -> None:
    lines = report.as_text(OUTCOMES).splitlines()
    assert lines[0].split() == ["target", "outcome", "from", "to", "seconds", "error"]
    assert lines[1].split() == ["schema=acme", "upgraded", "a1", "c3", "0.25"]
    assert lines[2].split()[:6] == ["schema=a|b", "failed", "base", "a1", "1.50", "Revision"]
    assert "more" not in lines[2]  # the error's first line
    assert lines[4].split()[2:4] == ["?", "?"]
    assert lines[1].index("upgraded") == lines[0].index("outcome")  # columns line up
    assert lines[-1] == "4 targets: 1 at head, 1 failed, 1 unreadable, 1 upgraded"


def test_the_markdown_report_escapes_pipes_for_a_job_summary() -> None:
    text = report.as_markdown(OUTCOMES)
    assert "| schema=a\\|b | failed | base | a1 | 1.50 | Revision b2 failed: x |" in text
    assert text.startswith("## Fleet\n\n4 targets: ")
    assert "|---|---|---|---|---|---|" in text


def test_the_json_report_keeps_every_field_and_the_whole_error() -> None:
    data = json.loads(report.as_json(OUTCOMES))
    assert data["summary"] == report.summary(OUTCOMES)
    assert data["targets"][1] == {
        "target": "schema=a|b",
        "outcome": "failed",
        "before": [],
        "after": ["a1"],
        "seconds": 1.5,
        "error": "Revision b2 failed: x\nmore",
        "wave": "wave 1",
    }
    assert data["targets"][3]["before"] is None


def test_counts_on_the_command_line_are_whole_numbers() -> None:
    from argparse import ArgumentTypeError

    from alembic_steady.fleet.cli import _count, _positive

    assert (_count("0"), _positive("3")) == (0, 3)
    for bad, says in [("0", "above 0"), ("x", "above 0"), ("-1", "above 0")]:
        with pytest.raises(ArgumentTypeError, match=f"give a whole number {says}"):
            _positive(bad)
    with pytest.raises(ArgumentTypeError, match=r"'1.5': give a whole number \(0 or more\)"):
        _count("1.5")
