"""The HTTP app against a real database server: probes that follow the migrations, and the
example CRUD router on the async session."""

from collections.abc import Iterator

import pytest
from alembic import command
from alembic_steady.testing.walk import Walk
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.migrations import alembic_config, phases, script_heads


@pytest.fixture
def client(database_url: URL) -> Iterator[TestClient]:
    """A client of the app on an empty database; the lifespan runs (engine created, disposed)."""
    with TestClient(create_app(url=database_url)) as client:
        yield client


@pytest.fixture(scope="module")
def migrated_client(walk: Walk) -> Iterator[TestClient]:
    """A client of the app on the database the migration walk left at head (its tables hold the
    walk's generated rows), so these tests cost the same however long the chain grows."""
    if walk.upgrade_failure:
        pytest.fail(f"no database at head to serve: {walk.upgrade_failure}")
    with TestClient(create_app(url=walk.url)) as client:
        yield client


def test_live_answers_without_the_database() -> None:
    # Nothing listens on port 1: the process is alive, the service is not ready.
    nowhere = URL.create("{% if cookiecutter.database == "mysql" %}mysql+aiomysql{% else %}postgresql+asyncpg{% endif %}", "app", "pw", "127.0.0.1", 1, "app")
    with TestClient(create_app(url=nowhere)) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "cannot connect to the database" in ready.json()["reason"]


def test_ready_follows_the_migrations(client: TestClient, database_url: URL) -> None:
    before = client.get("/health/ready")
    assert before.status_code == 503
    assert before.json()["current"] == []
    assert before.json()["head"] == phases().heads("pre")  # the post ones run after the rollout
    assert "migrations" in before.json()["reason"]

    # The probe reads the version table only: stamping head costs the same however long the chain
    # (test_migrations.py runs the revisions). A post head there stands for the pre one it needs.
    command.stamp(alembic_config(url=database_url), "heads")
    after = client.get("/health/ready")
    assert after.status_code == 200, after.json()
    assert after.json()["revision"] and set(after.json()["revision"]) <= script_heads()


def test_items_round_trip(migrated_client: TestClient) -> None:
    client = migrated_client
    created = client.post("/items", json={"name": "first", "description": "one"})
    assert created.status_code == 201, created.json()
    item = created.json()
    assert item["id"] is not None and item["created_at"] is not None

    assert client.get(f"/items/{item['id']}").json() == item
    assert item in client.get("/items", params={"limit": 1000}).json()

    patched = client.patch(f"/items/{item['id']}", json={"description": "changed"})
    assert patched.json() == {**item, "description": "changed"}

    assert client.delete(f"/items/{item['id']}").status_code == 204
    assert client.get(f"/items/{item['id']}").status_code == 404
    remaining = client.get("/items", params={"limit": 1000}).json()
    assert item["id"] not in [row["id"] for row in remaining]


def test_invalid_item_is_refused(migrated_client: TestClient) -> None:
    client = migrated_client
    before = client.get("/items").json()
    assert client.post("/items", json={"description": "no name"}).status_code == 422
    assert client.get("/items").json() == before


def test_what_the_table_cannot_hold_is_a_422_with_the_reason(migrated_client: TestClient) -> None:
    client = migrated_client
    item = client.post("/items", json={"name": "kept"}).json()
    refused = {
        "a null name": client.patch(f"/items/{item['id']}", json={"name": None}),
        "a NUL byte": client.post("/items", json={"name": "a\x00b"}),
        "an id past BIGINT": client.get(f"/items/{2**63}"),
        "a zero id": client.delete("/items/0"),
{%- if cookiecutter.database == "mysql" %}
        "a name past VARCHAR(255)": client.post("/items", json={"name": "x" * 256}),
{%- endif %}
    }
    for case, answer in refused.items():
        assert answer.status_code == 422, (case, answer.status_code, answer.text)
        assert answer.json()["detail"], case
    assert client.get(f"/items/{item['id']}").json() == item
