"""alembic-steady: Alembic migrations that are safe on a live database, on PostgreSQL and MySQL.

    from alembic_steady import Project
    from alembic_steady.runner.environment import MigrationEnvironment   # env.py
    from alembic_steady.runner.api import Migrations                      # upgrade() from code

See the README for a stock Alembic project's few lines, and for the pytest plugin.
"""

from .project import MAKE, Commands, MigrationSettings, Project, StaticSettings

__all__ = ["MAKE", "Commands", "MigrationSettings", "Project", "StaticSettings"]
__version__ = "0.1.0"
