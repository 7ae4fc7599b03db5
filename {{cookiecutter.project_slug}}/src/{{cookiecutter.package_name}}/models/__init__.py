"""Table models.

Every module of this package is imported below, so `SQLModel.metadata` is complete for Alembic's
autogenerate and for the tests: add a file here and `make migration` sees it, with no import to
add anywhere else (and none for a linter to remove as unused).
"""

import importlib
import pkgutil

from sqlalchemy import MetaData
from sqlmodel import SQLModel

# Named constraints can be altered and dropped portably, and only named CHECK constraints are
# compared (by migrations/compare.py, as PostgreSQL prints them). Set before any model module
# defines a table. CHECK constraints must be given a name (`sa.CheckConstraint(..., name="...")`),
# which this convention then prefixes.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

metadata: MetaData = SQLModel.metadata
