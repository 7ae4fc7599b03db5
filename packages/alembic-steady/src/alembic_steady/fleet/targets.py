"""The targets of a fleet run, one per line of a file (or row of a query):

    schema=NAME      a tenant schema of the configured database (PostgreSQL)
    database=NAME    a database on the configured server
    NAME             a schema on PostgreSQL, a database on MySQL
    a URL            a database anywhere (postgresql://..., mysql://...)

Blank lines and `#` comments are skipped. A target's label (what reports show) never holds a
password.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy.engine import URL, make_url

from ..dialects.base import parse_url


@dataclass(frozen=True)
class Target:
    url: URL  # the database, on the async driver
    schema: str | None  # the tenant schema (PostgreSQL), None for the database's own
    label: str  # "schema=acme", "database=acme", or the URL without its password

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.url.render_as_string(hide_password=False), self.schema)


def parse(line: str, base: URL, dialect: str) -> Target:
    """One target; `base` is the configured database (MIGRATION_DATABASE_URL or DATABASE_URL)."""
    text = line.strip()
    kind, equals, name = text.partition("=")
    if "://" in text:
        try:
            url = parse_url(text, _backend(text))
        except (ValueError, CommandError):
            raise ValueError(
                "a URL no dialect takes (expected postgresql://... or mysql://..., "
                "special characters percent-encoded)"
            ) from None
        # Labelled as written (the scheme the user gave), the password hidden.
        label = make_url(text).render_as_string(hide_password=True)
        return Target(url, None, label)
    if not equals:
        kind, name = ("schema" if dialect == "postgresql" else "database"), text
    name = name.strip()
    if kind.strip() not in ("schema", "database") or not name:
        raise ValueError("expected schema=NAME, database=NAME, NAME or a database URL")
    if kind.strip() == "database":
        return Target(base.set(database=name), None, f"database={name}")
    if dialect != "postgresql":
        raise ValueError("schema= targets are PostgreSQL's: on MySQL name a database=")
    return Target(base, name, f"schema={name}")


def _backend(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    return "postgresql" if scheme in ("postgresql", "postgres") else scheme


def parse_all(lines: Iterable[str], base: URL, dialect: str, source: str) -> list[Target]:
    """Every target of `lines`, in order; a ValueError naming the line of the first bad one."""
    targets: list[Target] = []
    seen: dict[tuple[str, str | None], int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            target = parse(line, base, dialect)
        except ValueError as exc:
            raise CommandError(f"{source}, line {number}: {exc}.") from None
        if target.key in seen:
            raise CommandError(
                f"{source}, line {number}: {target.label} is line {seen[target.key]}'s target "
                "too; name each target once."
            )
        seen[target.key] = number
        targets.append(target)
    return targets


def from_file(path: Path, base: URL, dialect: str) -> list[Target]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandError(
            f"Cannot read the targets file {path}: {exc.strerror}. Give a file with one target "
            "per line."
        ) from None
    return parse_all(lines, base, dialect, str(path))


def share(targets: list[Target], shard: str | None) -> list[Target]:
    """The targets of shard "I/K" (the I-th of K pods, from 0: Kubernetes' JOB_COMPLETION_INDEX):
    every K-th target from the I-th, so each pod gets a spread of the list."""
    if shard is None:
        return targets
    index, slash, count = shard.partition("/")
    if not (slash and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise CommandError(
            f"--shard {shard!r}: give I/K, the pod's index from 0 and the number of pods "
            "(e.g. --shard 0/4)."
        )
    return targets[int(index) :: int(count)]
