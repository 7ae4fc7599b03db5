"""The models package registers every table model in the metadata Alembic compares against, with
constraint names from the naming convention."""

import importlib
import pkgutil

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import {% if cookiecutter.database == "mysql" %}mysql{% else %}postgresql{% endif %}
from sqlalchemy.schema import CreateIndex, CreateTable

import {{ cookiecutter.package_name }}.models as models

from .models_registration import (
    MODELS_FIRST_IMPORTED_HERE,
    MODULES_FROM_THE_PACKAGE,
    TABLES_FROM_THE_PACKAGE,
)


def test_importing_the_package_registers_every_table_model() -> None:
    # models_registration.py noted what the package alone registered, before any test could
    # import a model module by hand; every module imported now, anything new is a model
    # autogenerate misses.
    assert MODELS_FIRST_IMPORTED_HERE, (
        "the models package was imported before tests/models_registration.py (by a pytest plugin, "
        "another conftest.py or an import above it in tests/conftest.py), so what it registers "
        "alone cannot be told here"
    )
    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{module.name}")
    everything = set(models.metadata.tables)
    assert everything, "the models package holds no table model"
    missing = sorted(everything - TABLES_FROM_THE_PACKAGE)
    assert not missing, (
        f"tables registered only when their module is imported by hand: {missing}; "
        f"the models package imported {MODULES_FROM_THE_PACKAGE}"
    )


def test_constraints_are_named_by_the_convention() -> None:
    # A table with one constraint of each kind, on a metadata with the project's convention: the
    # names PostgreSQL gets are the ones `make migration` writes and later revisions can drop.
    probe = MetaData(naming_convention=models.metadata.naming_convention)
    Table("parent", probe, Column("id", Integer, primary_key=True))
    child = Table(
        "child",
        probe,
        Column("id", Integer, primary_key=True),
        Column("parent_id", ForeignKey("parent.id")),
        Column("code", String{% if cookiecutter.database == "mysql" %}(32){% endif %}, unique=True),
        CheckConstraint("id > 0", name="positive"),
    )
    index = Index(None, child.c.code)
{%- if cookiecutter.database == "mysql" %}
    dialect = mysql.dialect()
{%- else %}
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
{%- endif %}
    ddl = str(CreateTable(child).compile(dialect=dialect))
    for name in ("pk_child", "fk_child_parent_id_parent", "uq_child_code", "ck_child_positive"):
        assert f"CONSTRAINT {name} " in ddl, f"{name} missing from:\n{ddl}"
    assert "INDEX ix_child_code " in str(CreateIndex(index).compile(dialect=dialect))
    # And the models themselves use it: every primary key is pk_<table>.
    for table in models.metadata.sorted_tables:
        assert f"CONSTRAINT pk_{table.name} " in str(CreateTable(table).compile(dialect=dialect))
{%- if cookiecutter.database == "mysql" %}


def test_convention_names_fit_mysql_identifier_limit() -> None:
    # MySQL refuses identifiers over 64 characters; long table and column names make the
    # convention's names longer than that, and SQLAlchemy shortens them (with a hash suffix).
    probe = MetaData(naming_convention=models.metadata.naming_convention)
    parent = "customer_loyalty_programme_memberships"
    Table(parent, probe, Column("id", Integer, primary_key=True))
    child = Table(
        "customer_loyalty_programme_membership_events",
        probe,
        Column("id", Integer, primary_key=True),
        Column("customer_loyalty_programme_membership_id", ForeignKey(f"{parent}.id")),
    )
    ddl = str(CreateTable(child).compile(dialect=mysql.dialect()))
    names = [line.split()[1] for line in ddl.splitlines() if "CONSTRAINT " in line]
    assert names, ddl
    assert all(len(name) <= 64 for name in names), names
{%- endif %}
