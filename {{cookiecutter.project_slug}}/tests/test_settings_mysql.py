"""Settings: every accepted URL form, seed-style DB_* parts, escaping, and no password in any
output."""

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.settings import Settings

PASSWORD = "p%ss@w:rd/x?#"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets counts: no DATABASE_URL or DB_* from the shell."""
    for name in ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"):
        monkeypatch.delenv(name, raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings init arg


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://u:pw@db.example:3307/app",
        "mysql+pymysql://u:pw@db.example:3307/app",
        "mariadb://u:pw@db.example:3307/app",
        "mariadb+pymysql://u:pw@db.example:3307/app",
        "mysql+aiomysql://u:pw@db.example:3307/app",
    ],
)
def test_database_url_schemes_are_normalised_to_aiomysql(raw: str) -> None:
    url = settings(database_url=raw).sqlalchemy_url
    assert url.drivername == "mysql+aiomysql"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "pw",
        "db.example",
        3307,
        "app",
    )


def test_db_parts_default_to_port_3306(monkeypatch: pytest.MonkeyPatch) -> None:
    # The parts a team builds mysql+pymysql://DB_USER:DB_PASSWORD@DB_HOST:DB_PORT/DB_NAME from.
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_USER", "app")
    monkeypatch.setenv("DB_NAME", "shop")
    url = settings().sqlalchemy_url
    assert (url.drivername, url.host, url.port, url.username, url.database) == (
        "mysql+aiomysql",
        "db.internal",
        3306,
        "app",
        "shop",
    )


def test_query_parameters_survive() -> None:
    url = settings(database_url="mysql://u@h/app?charset=utf8mb4").sqlalchemy_url
    assert dict(url.query) == {"charset": "utf8mb4"}


def test_database_url_wins_over_parts() -> None:
    url = settings(database_url="mysql://u@h/from_url", db_name="from_parts").sqlalchemy_url
    assert url.database == "from_url"


def test_parts_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("DB_USER", "app@team")
    url = settings().sqlalchemy_url
    # Rendered and parsed back, nothing is lost or split at @ : / ? # %.
    again = make_url(url.render_as_string(hide_password=False))
    assert (again.username, again.password, again.host) == ("app@team", PASSWORD, "localhost")


def test_percent_encoded_password_in_url() -> None:
    url = settings(database_url="mysql://u:p%25ss%40w%3Ard%2Fx%3F%23@h/app").sqlalchemy_url
    assert url.password == PASSWORD


def test_password_is_never_shown() -> None:
    configured = settings(db_password=PASSWORD, database_url=f"mysql://u:{PASSWORD[:4]}@h/d")
    for text in (repr(configured), str(configured), repr(configured.sqlalchemy_url)):
        assert PASSWORD not in text
        assert "p%ss" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not a url", "DATABASE_URL is not a valid URL"),
        ("postgresql://u:secret@h/app", "unsupported scheme 'postgresql'"),
    ],
)
def test_bad_database_url_names_the_variable_not_the_secret(raw: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(database_url=raw)
    assert expected in str(caught.value)
    assert "secret" not in str(caught.value)
