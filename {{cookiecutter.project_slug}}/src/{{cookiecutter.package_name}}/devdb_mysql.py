"""The development database's chores on MySQL. There is no embedded MySQL: `make db-up` uses
Docker Compose where a Docker engine answers; otherwise `start` checks that the configured server
answers, or explains how to point the project at one.

    python -m {{ cookiecutter.package_name }}.devdb start    # what `make db-up` runs without Docker
    python -m {{ cookiecutter.package_name }}.devdb reset    # `make db-reset` (any dev server)

`reset` drops and recreates the configured database, in development only.
"""

import argparse
import asyncio
import sys

from sqlalchemy import text

from .settings import get_settings

SYSTEM_DATABASES = ("", "mysql", "information_schema", "performance_schema", "sys")


def _server_answers() -> bool:
    async def ping() -> None:
        from .db import create_engine

        engine = create_engine(url=get_settings().sqlalchemy_url.set(database=""))
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(ping())
    except Exception:
        return False
    return True


def start() -> int:
    settings = get_settings()
    print(settings.describe_database(), file=sys.stderr)
    if _server_answers():
        print("No Docker engine answers, but the configured MySQL server does: nothing to start.")
        return 0
    print(
        "No Docker engine answers, the configured server does not either, and there is no "
        "embedded MySQL. Point the project at a MySQL "
        "8 or MariaDB 10.6+ server: set DATABASE_URL=mysql://USER:PASSWORD@HOST:3306/NAME (or "
        "DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME) in .env or the environment, create "
        "the database (make db-reset does, in development), then make migrate. With Docker, "
        "make db-up starts one from compose.yaml.",
        file=sys.stderr,
    )
    return 1


def reset() -> int:
    """Drop and recreate the configured database: development only."""
    settings = get_settings()
    url = settings.sqlalchemy_url
    print(settings.describe_database(), file=sys.stderr)
    if settings.environment != "development":
        print(
            f"Refusing: make db-reset drops the database, and ENVIRONMENT is "
            f"{settings.environment}. It runs only with ENVIRONMENT=development.",
            file=sys.stderr,
        )
        return 1
    if (url.database or "").lower() in SYSTEM_DATABASES:
        print(f"Refusing to drop the server's own database {url.database!r}.", file=sys.stderr)
        return 1
    name = "`" + str(url.database).replace("`", "``") + "`"

    async def recreate() -> None:
        from .db import create_engine

        # Connected without a database: the configured one may not exist yet.
        engine = create_engine(settings, url=url.set(database=""))
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
                await connection.execute(
                    text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                )
        finally:
            await engine.dispose()

    try:
        asyncio.run(recreate())
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's wrapper
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"Reset failed: {reason}. Is the server running (make db-up)?", file=sys.stderr)
        return 1
    print(f"Database {url.database} dropped and created empty; make migrate applies the schema.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devdb", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "reset"])
    args = parser.parse_args(argv)
    return reset() if args.action == "reset" else start()


if __name__ == "__main__":
    sys.exit(main())
