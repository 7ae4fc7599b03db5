"""Settings: every accepted URL form, seed-style DB_* parts, escaping of the parts, and no
password in any output."""

import tempfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.settings import Settings, database_source

PASSWORD = "p%ss@w:rd/x?#"
{%- if cookiecutter.database == "mysql" %}
# What users paste (PyMySQL's schemes too, as sync code writes them), all run on aiomysql.
SCHEMES = ["mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql", "mysql+aiomysql"]
DRIVER, DEFAULT_PORT, OTHER_SERVER = "mysql+aiomysql", 3306, "postgresql"
QUERY = {"charset": "utf8mb4"}
{%- else %}
# What hosting providers hand out, all run on asyncpg.
SCHEMES = ["postgresql", "postgres", "postgresql+asyncpg"]
DRIVER, DEFAULT_PORT, OTHER_SERVER = "postgresql+asyncpg", 5432, "mysql"
QUERY = {"host": "/run/pg", "ssl": "require"}
{%- endif %}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets counts: no DATABASE_URL or DB_* from the shell."""
    for name in ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"):
        monkeypatch.delenv(name, raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings init arg


@pytest.mark.parametrize("scheme", SCHEMES)
def test_database_url_schemes_are_normalised_to_the_async_driver(scheme: str) -> None:
    url = settings(database_url=f"{scheme}://u:pw@db.example:6543/app").sqlalchemy_url
    assert url.drivername == DRIVER
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "pw",
        "db.example",
        6543,
        "app",
    )


def test_db_parts_make_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # The parts teams build their URL from (DB_USER:DB_PASSWORD@DB_HOST:DB_PORT/DB_NAME).
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_USER", "app")
    monkeypatch.setenv("DB_NAME", "shop")
    url = settings().sqlalchemy_url
    assert (url.drivername, url.host, url.port, url.username, url.database) == (
        DRIVER,
        "db.internal",
        DEFAULT_PORT,
        "app",
        "shop",
    )


def test_query_parameters_survive() -> None:
    query = "&".join(f"{name}={value}" for name, value in QUERY.items())
    url = settings(database_url=f"{SCHEMES[0]}://u@h/app?{query}").sqlalchemy_url
    assert dict(url.query) == QUERY


def test_database_url_wins_over_parts() -> None:
    url = settings(database_url=f"{SCHEMES[0]}://u@h/from_url", db_name="from_parts").sqlalchemy_url
    assert url.database == "from_url"


def test_parts_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("DB_USER", "app@team")
    url = settings().sqlalchemy_url
    # Rendered and parsed back, nothing is lost or split at @ : / ? # %.
    again = make_url(url.render_as_string(hide_password=False))
    assert (again.username, again.password, again.host) == ("app@team", PASSWORD, "localhost")


def test_percent_encoded_password_in_url() -> None:
    url = settings(database_url=f"{SCHEMES[0]}://u:p%25ss%40w%3Ard%2Fx%3F%23@h/app").sqlalchemy_url
    assert url.password == PASSWORD


def test_password_is_never_shown() -> None:
    url = f"{SCHEMES[0]}://u:{PASSWORD[:4]}@h/d"
    configured = settings(db_password=PASSWORD, database_url=url)
    for text in (repr(configured), str(configured), repr(configured.sqlalchemy_url)):
        assert PASSWORD not in text
        assert "p%ss" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not a url", "DATABASE_URL is not a valid URL"),
        (f"{OTHER_SERVER}://u:secret@h/app", f"unsupported scheme '{OTHER_SERVER}'"),
    ],
)
def test_bad_database_url_names_the_variable_not_the_secret(raw: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(database_url=raw)
    assert expected in str(caught.value)
    assert "secret" not in str(caught.value)


def test_an_empty_variable_names_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose passes `DATABASE_URL=` for an unset one: .env's database must still count.
    # (A folder of its own, not tmp_path: pytest makes its base folder private when it creates
    # one, and the embedded server of this run may be running from below it.)
    with tempfile.TemporaryDirectory() as folder:
        env_file = Path(folder) / ".env"
        env_file.write_text("DATABASE_URL={% if cookiecutter.database == "mysql" %}mysql{% else %}postgresql{% endif %}://app@db.internal/shop\n", encoding="utf-8")
        monkeypatch.setenv("DATABASE_URL", "")
        chosen = Settings(_env_file=env_file)  # type: ignore[call-arg]  # pydantic-settings init arg
        assert chosen.sqlalchemy_url.host == "db.internal"
        assert database_source(env_file) == str(env_file)
