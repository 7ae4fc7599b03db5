"""project.py: the command words messages suggest, and what a Project derives from its fields."""

from dataclasses import fields
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from support import make_project

from alembic_steady import MAKE, Commands


def test_the_default_commands_are_the_make_targets() -> None:
    assert {f.name: getattr(MAKE, f.name) for f in fields(Commands)} == {
        "migrate": "make migrate",
        "migrate_rev": "make migrate rev={revision}",
        "migrate_phase": "make migrate phase={phase}",
        "rollback": "make rollback",
        "stamp": "make stamp",
        "current": "make current",
        "history": "make history",
        "heads": "make heads",
        "merge": "make merge",
        "migration": 'make migration msg="..."',
        "backup": "make backup",
        "db_up": "make db-up",
        "backfill": "make backfill",
        "accept_edit_rev": "make accept-edit rev={revision}",
    }
    assert Commands() == MAKE


def test_rollback_and_stamp_take_make_variables() -> None:
    assert MAKE.migrate_to("c3") == "make migrate rev=c3"
    assert MAKE.migrate_in("pre") == "make migrate phase=pre"
    assert MAKE.rollback_to("steps=2") == "make rollback steps=2"
    assert MAKE.rollback_to("rev=base") == "make rollback rev=base"
    assert MAKE.stamp_to("0b1c2d3e4f50") == "make stamp rev=0b1c2d3e4f50"
    assert MAKE.accept_edit_of("c3") == "make accept-edit rev=c3"


def test_rollback_and_stamp_follow_their_commands() -> None:
    words = Commands(rollback="just down", stamp="just stamp")
    assert words.rollback_to("steps=1") == "just down steps=1"
    assert words.stamp_to("abc") == "just stamp rev=abc"


def test_module_commands_replace_what_the_module_cli_runs_itself() -> None:
    module = make_project(package="shop").module_commands
    assert module.migrate == "python -m shop.migrations upgrade"
    assert module.current == "python -m shop.migrations current"
    assert module.migrate_to("c3") == "python -m shop.migrations upgrade c3"
    assert module.accept_edit_of("c3") == "python -m shop.migrations accept-edit c3"
    assert module.migrate_in("post") == "python -m shop.migrations upgrade --phase post"
    assert module.backfill == "python -m shop.migrations backfill run"
    replaced = {"migrate", "migrate_rev", "migrate_phase", "current", "accept_edit_rev", "backfill"}
    unchanged = {f.name for f in fields(Commands)} - replaced
    assert {name: getattr(module, name) for name in unchanged} == {
        name: getattr(MAKE, name) for name in unchanged
    }


def test_module_commands_keep_a_projects_own_words_for_the_rest() -> None:
    project = make_project(package="shop", commands=Commands(rollback="task rollback"))
    module = project.module_commands
    assert module.rollback == "task rollback"
    assert module.migrate == "python -m shop.migrations upgrade"
    assert project.commands.migrate == "make migrate"  # the project itself is unchanged


def test_versions_is_the_versions_folder_of_migrations(tmp_path: Path) -> None:
    assert make_project(tmp_path).versions == tmp_path / "migrations" / "versions"


def test_session_name_names_the_package() -> None:
    assert make_project(package="billing").session_name == "billing migrations"


def test_folder_is_the_source_tree(tmp_path: Path) -> None:
    assert make_project(tmp_path).folder == tmp_path


def test_folder_is_the_current_folder_in_an_installed_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert make_project(None).folder == tmp_path


def test_with_commands_returns_a_copy_with_other_words(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    words = Commands(migrate="alembic upgrade head")
    changed = project.with_commands(words)
    assert changed.commands is words
    assert changed.package == project.package and changed.migrations == project.migrations
    assert project.commands is MAKE


def test_describe_names_the_database_by_default() -> None:
    url = URL.create("postgresql+asyncpg", username="u", password="pw", database="shop")
    assert make_project().describe(url) == "Database: shop"
