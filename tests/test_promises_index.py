"""mutation/promises.toml, the promises index, against the READMEs (and their docs/) and
mutation/mutations.toml (no render, no database): each promise is still made where the index says
and broken by at least one mutation, and each mutation proves one promise."""

import re
import tomllib
from collections import Counter
from typing import Any

import pytest

from .conftest import TEMPLATE

MUTATION = TEMPLATE / "mutation"
# The three READMEs, and the reference pages they point to.
DOCS = (
    "README.md",
    "{{cookiecutter.project_slug}}/README.md",
    "packages/alembic-steady/README.md",
    *(
        page.relative_to(TEMPLATE).as_posix()
        for page in sorted(TEMPLATE.glob("docs/*.md"))
        + sorted(TEMPLATE.glob("{{cookiecutter.project_slug}}/docs/*.md"))
    ),
)


def entries(name: str, kind: str) -> list[dict[str, Any]]:
    with (MUTATION / name).open("rb") as handle:
        found: list[dict[str, Any]] = tomllib.load(handle).get(kind, [])
    return found


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


PROMISES = entries("promises.toml", "promise")
MUTATIONS = {m["name"] for m in entries("mutations.toml", "mutation")}


def test_ids_are_unique_and_docs_known() -> None:
    ids = Counter(p["id"] for p in PROMISES)
    assert [i for i, n in ids.items() if n > 1] == []
    assert {p["doc"] for p in PROMISES} <= set(DOCS)


@pytest.mark.parametrize("promise", PROMISES, ids=[p["id"] for p in PROMISES])
def test_promise_is_made_by_its_doc_and_broken_by_a_mutation(promise: dict[str, Any]) -> None:
    doc = flat((TEMPLATE / promise["doc"]).read_text(encoding="utf-8"))
    assert flat(promise["says"]) in doc, f"{promise['doc']} no longer says it"
    assert promise["mutations"], "no mutation breaks this promise: add one to mutations.toml"
    unknown = [name for name in promise["mutations"] if name not in MUTATIONS]
    assert unknown == [], "not in mutations.toml (renamed?)"


def test_every_mutation_proves_exactly_one_promise() -> None:
    owners = Counter(name for p in PROMISES for name in p["mutations"])
    assert sorted(MUTATIONS - set(owners)) == [], "mutations no promise lists"
    assert [name for name, n in owners.items() if n > 1] == []


def test_every_mutation_still_finds_its_code() -> None:
    # `make mutate` refuses a mutation whose `old` is not in its file exactly once; this says so
    # in the fast tier, before a CI run spends minutes getting there.
    moved = [
        (m["name"], (TEMPLATE / m["file"]).read_text(encoding="utf-8").count(m["old"]))
        for m in entries("mutations.toml", "mutation")
    ]
    assert [(name, count) for name, count in moved if count != 1] == []
