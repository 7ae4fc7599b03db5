"""alembic-steady: Alembic migrations that are safe on a live database, on PostgreSQL and MySQL.

    from alembic_steady import Project
    from alembic_steady.runner.environment import MigrationEnvironment   # env.py
    from alembic_steady.runner.api import Migrations                      # upgrade() from code

See the README for a stock Alembic project's few lines, and for the pytest plugin.
"""

import gc

# Alembic and SQLAlchemy load here, first in a migration chore (`python -m <package>.migrations`,
# the Make targets): the garbage collector would walk everything they made so far, again and
# again while they load (about 5 % of `make plan`). What they make lives as long as the process,
# so they load without it, and then stay out of its later passes (gc.freeze).
_collecting = gc.isenabled()
gc.disable()
try:
    from .project import MAKE, Commands, MigrationSettings, Project, StaticSettings
finally:
    if _collecting:
        gc.freeze()
        gc.enable()

__all__ = ["MAKE", "Commands", "MigrationSettings", "Project", "StaticSettings"]
__version__ = "0.1.0"
