"""The models package registers every table model in the metadata Alembic compares against."""

import importlib
import inspect
import sys
from pathlib import Path

from sqlmodel import SQLModel

import {{ cookiecutter.package_name }}.models as models


def test_every_model_module_is_imported_by_the_package() -> None:
    files = {path.stem for path in Path(models.__file__).parent.glob("*.py")} - {"__init__"}
    assert files, "the models package holds no model module"
    missing = {name for name in files if f"{models.__name__}.{name}" not in sys.modules}
    assert not missing, f"model modules not imported by the models package: {missing}"


def test_every_table_model_is_in_the_metadata() -> None:
    tables = set()
    for path in Path(models.__file__).parent.glob("[!_]*.py"):
        module = importlib.import_module(f"{models.__name__}.{path.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, SQLModel) and hasattr(cls, "__table__"):
                tables.add(cls.__table__.name)
    assert tables
    assert tables <= set(models.metadata.tables), tables - set(models.metadata.tables)
