"""runner/settings.py: PostgreSQL-style durations, and settings errors that name the variable
without its value."""

from dataclasses import replace

import pytest
from alembic.util import CommandError
from pydantic import BaseModel, ValidationError
from support import Settings

from alembic_steady.runner.settings import duration_ms, invalid_settings, load_settings


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500.0),
        ("1s", 1000.0),
        ("2min", 120_000.0),
        ("0", 0.0),
        ("1.5s", 1500.0),
        ("250", 250.0),  # a bare number is milliseconds, as in PostgreSQL
        ("1500us", 1.5),
        ("1h", 3_600_000.0),
        ("2d", 172_800_000.0),
        (" 3 s ", 3000.0),
        ("\t10ms\n", 10.0),
    ],
)
def test_duration_in_milliseconds(value: str, ms: float) -> None:
    assert duration_ms("migration_lock_timeout", value) == pytest.approx(ms)


@pytest.mark.parametrize(
    "value",
    ["", "abc", "1 sec", "-1s", "1,5s", "5m", "1S", "s", "1.s", "1s2", "1e3", "one second"],
)
def test_a_bad_duration_names_the_setting_and_the_fix(value: str) -> None:
    with pytest.raises(CommandError) as raised:
        duration_ms("migration_lock_timeout", value)
    message = str(raised.value)
    assert message.startswith("Invalid database settings (MIGRATION_LOCK_TIMEOUT: ")
    assert "is not a duration" in message
    assert "Use a PostgreSQL duration such as 500ms, 1s or 2min (0 for no limit)." in message
    assert type(raised.value) is CommandError


class DatabaseSettings(BaseModel):
    db_port: int
    db_connect_timeout: float


def validation_error(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        DatabaseSettings(**values)
    return raised.value


def test_invalid_settings_lists_each_variable_and_problem_without_the_values() -> None:
    error = validation_error(db_port="hunter2-secret", db_connect_timeout="x-secret")
    problems = invalid_settings(error)
    assert problems == (
        "DB_PORT: Input should be a valid integer, unable to parse string as an integer; "
        "DB_CONNECT_TIMEOUT: Input should be a valid number, unable to parse string as a number"
    )
    assert "secret" not in problems


def test_invalid_settings_joins_a_nested_location() -> None:
    class Duck(Exception):
        def errors(self) -> list[dict[str, object]]:
            return [{"loc": ("db", 0, "port"), "msg": "Field required", "input": "p4ss"}]

    assert invalid_settings(Duck()) == "DB.0.PORT: Field required"


@pytest.mark.parametrize("error", [RuntimeError("boom"), CommandError("no")])
def test_invalid_settings_is_none_for_other_errors(error: Exception) -> None:
    assert invalid_settings(error) is None


def test_load_settings_turns_a_validation_error_into_one_line() -> None:
    error = validation_error(db_port="hunter2-secret", db_connect_timeout=1)

    def read() -> Settings:
        raise error

    with pytest.raises(CommandError) as raised:
        load_settings(read)
    assert str(raised.value) == (
        "Invalid database settings (DB_PORT: Input should be a valid integer, unable to parse "
        "string as an integer). Fix them in the environment or in .env."
    )
    # The validation error (which holds the values) is not chained into the traceback.
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_load_settings_passes_other_errors_through() -> None:
    def read() -> Settings:
        raise KeyError("HOME")

    with pytest.raises(KeyError):
        load_settings(read)


def test_load_settings_returns_valid_settings() -> None:
    settings = Settings(migration_lock_timeout="250ms", migration_statement_timeout="5min")
    assert load_settings(lambda: settings) is settings


@pytest.mark.parametrize("name", ["migration_lock_timeout", "migration_statement_timeout"])
def test_load_settings_checks_both_durations(name: str) -> None:
    settings = replace(Settings(), **{name: "soon"})
    with pytest.raises(CommandError, match=f"{name.upper()}: 'soon' is not a duration"):
        load_settings(lambda: settings)
