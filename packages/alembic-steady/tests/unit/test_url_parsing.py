"""dialects.parse_url / by_name / for_url: the URL schemes users paste, each run on the async
driver, and errors that never echo the password."""

import pytest
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from alembic_steady import StaticSettings
from alembic_steady.dialects import by_name, for_url, parse_url
from alembic_steady.dialects.mysql import MySQL
from alembic_steady.dialects.postgresql import PostgreSQL

SECRET = "s3cret-pw"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_postgresql_schemes_run_on_asyncpg(scheme: str) -> None:
    url = parse_url(f"{scheme}://app:{SECRET}@db.internal:5433/shop", "postgresql")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app",
        SECRET,
        "db.internal",
        5433,
        "shop",
    )


@pytest.mark.parametrize(
    ("scheme", "backend"),
    [
        ("mysql", "mysql"),
        ("mysql+pymysql", "mysql"),
        ("mysql+aiomysql", "mysql"),
        ("mariadb", "mysql"),
        ("mariadb+pymysql", "mariadb"),
        ("mariadb+aiomysql", "mariadb"),
    ],
)
def test_mysql_and_mariadb_schemes_run_on_aiomysql(scheme: str, backend: str) -> None:
    url = parse_url(f"{scheme}://root:{SECRET}@db:3306/shop", backend)
    assert url.drivername == "mysql+aiomysql"
    assert (url.password, url.host, url.port, url.database) == (SECRET, "db", 3306, "shop")


def test_query_parameters_are_kept() -> None:
    url = parse_url("postgresql://postgres@/shop?host=/run/pg&ssl=require", "postgresql")
    assert dict(url.query) == {"host": "/run/pg", "ssl": "require"}
    mysql = parse_url("mysql+pymysql://root@db/shop?charset=utf8mb4", "mysql")
    assert dict(mysql.query) == {"charset": "utf8mb4"}


def test_a_percent_encoded_password_is_decoded() -> None:
    url = parse_url("postgresql://app:p%40ss%3Aw%2Frd@db/shop", "postgresql")
    assert url.password == "p@ss:w/rd"


@pytest.mark.parametrize(
    ("raw", "backend", "hint"),
    [
        (f"mysql://app:{SECRET}@db/shop", "postgresql", "postgres://, postgresql+asyncpg://"),
        (f"postgresql+psycopg://app:{SECRET}@db/shop", "postgresql", "use postgresql://"),
        (f"postgresql://app:{SECRET}@db/shop", "mysql", "use mysql:// (or mysql+pymysql://"),
        (f"sqlite:///{SECRET}.db", "mysql", "mariadb://"),
    ],
)
def test_an_unsupported_scheme_is_named_without_the_password(
    raw: str, backend: str, hint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        parse_url(raw, backend)
    message = str(raised.value)
    scheme = raw.split("://")[0]
    assert message.startswith(f"DATABASE_URL uses the unsupported scheme {scheme!r}; ")
    assert hint in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("raw", "backend", "expected"),
    [
        (f"postgresql://app:{SECRET}@db:port/shop", "postgresql", "postgresql://USER:PASSWORD"),
        (f"app:{SECRET}@db/shop", "postgresql", "postgresql://USER:PASSWORD@HOST:PORT/NAME"),
        (f"postgresql://app:{SECRET}@[::1/shop", "postgresql", "postgresql://USER:PASSWORD"),
        ("", "postgresql", "postgresql://USER:PASSWORD"),
        (f"mysql://root:{SECRET}@db:33o6/shop", "mysql", "mysql://USER:PASSWORD@HOST:PORT/NAME"),
    ],
)
def test_a_bad_url_says_what_is_expected_without_echoing_it(
    raw: str, backend: str, expected: str
) -> None:
    with pytest.raises(ValueError) as raised:
        parse_url(raw, backend)
    message = str(raised.value)
    assert message.startswith("DATABASE_URL is not a valid URL; expected ")
    assert expected in message
    assert "(percent-encode special characters)" in message
    assert SECRET not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_by_name_knows_both_servers() -> None:
    assert isinstance(by_name("postgresql"), PostgreSQL)
    assert isinstance(by_name("mysql"), MySQL)
    assert isinstance(by_name("mariadb"), MySQL)


def test_by_name_refuses_other_servers() -> None:
    with pytest.raises(CommandError, match="sqlite databases are not supported"):
        by_name("sqlite")
    with pytest.raises(CommandError):
        parse_url("sqlite://", "sqlite")


@pytest.mark.parametrize(
    ("raw", "dialect"),
    [
        ("postgresql+asyncpg://u@h/d", PostgreSQL),
        ("mysql+aiomysql://u@h/d", MySQL),
        ("mariadb+aiomysql://u@h/d", MySQL),
    ],
)
def test_for_url_picks_the_dialect_of_the_backend(raw: str, dialect: type) -> None:
    assert isinstance(for_url(make_url(raw)), dialect)


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://app@db/shop", "postgresql+asyncpg"),
        ("postgres://app@db/shop", "postgresql+asyncpg"),
        ("mysql+pymysql://app@db/shop", "mysql+aiomysql"),
        ("mariadb://app@db/shop", "mysql+aiomysql"),
        # Named deliberately: kept, and SQLAlchemy says whether it can run async.
        ("postgresql+psycopg://app@db/shop", "postgresql+psycopg"),
    ],
)
def test_a_stock_projects_url_runs_on_the_async_driver(given: str, driver: str) -> None:
    """alembic.ini's sqlalchemy.url, as stock projects and sync tools write it."""
    assert StaticSettings(given).sqlalchemy_url.drivername == driver


def test_a_bad_url_message_in_full() -> None:
    with pytest.raises(ValueError) as raised:
        parse_url(f"mysql://root:{SECRET}@db:33o6/shop", "mysql")
    assert str(raised.value) == (
        "DATABASE_URL is not a valid URL; expected mysql://USER:PASSWORD@HOST:PORT/NAME "
        "(percent-encode special characters)"
    )
