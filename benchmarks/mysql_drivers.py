"""asyncmy against aiomysql, side by side in one run, on the MySQL/MariaDB that TEST_MYSQL_URL
names: connect, GET_LOCK, CREATE TABLE, CREATE INDEX, 50 INSERTs, SELECT, DROP, per round.

    pip install asyncmy aiomysql 'sqlalchemy[asyncio]'
    TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/mysql python benchmarks/mysql_drivers.py

It creates and drops the database `bench_mysql_drivers`. The figures chose the mysql option's
driver (template README, "The mysql option").
"""

import asyncio
import os
import statistics
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

SERVER = make_url(os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql"))
DATABASE = "bench_mysql_drivers"
RUNS = 20


async def once(driver: str) -> float:
    url = SERVER.set(drivername=f"mysql+{driver}", database=DATABASE)
    engine = create_async_engine(url, poolclass=NullPool)
    started = time.perf_counter()
    async with engine.connect() as connection:
        await connection.execute(text("SELECT GET_LOCK('bench', 5)"))
        await connection.execute(
            text("CREATE TABLE t (id BIGINT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(255))")
        )
        await connection.execute(text("CREATE INDEX ix_t_name ON t (name)"))
        for i in range(50):
            await connection.execute(text("INSERT INTO t (name) VALUES (:n)"), {"n": str(i)})
        await connection.execute(text("SELECT * FROM t"))
        await connection.execute(text("DROP TABLE t"))
        await connection.execute(text("SELECT RELEASE_LOCK('bench')"))
        await connection.commit()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


async def admin(statement: str) -> None:
    engine = create_async_engine(SERVER.set(drivername="mysql+aiomysql", database=""))
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def main() -> None:
    await admin(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    try:
        for round_ in (1, 2):
            medians = {}
            for driver in ("asyncmy", "aiomysql"):
                times = [await once(driver) for _ in range(RUNS)]
                medians[driver] = statistics.median(times)
                print(
                    f"round {round_} {driver:9s} median {medians[driver] * 1000:6.1f} ms, "
                    f"best {min(times) * 1000:6.1f} ms ({RUNS} runs)"
                )
            print(f"round {round_} aiomysql/asyncmy {medians['aiomysql'] / medians['asyncmy']:.2f}")
    finally:
        await admin(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    asyncio.run(main())
