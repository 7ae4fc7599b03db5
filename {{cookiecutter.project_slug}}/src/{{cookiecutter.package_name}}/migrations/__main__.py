"""Migrate from an installed wheel or image, with no source tree and no alembic.ini, and run the
chores the Make targets run:

    python -m {{ cookiecutter.package_name }}.migrations upgrade [REV]       # default: head
    python -m {{ cookiecutter.package_name }}.migrations current
    python -m {{ cookiecutter.package_name }}.migrations wait-for-head --timeout 300

`--help` lists the rest. What it runs, and the words of its messages, are alembic-steady's
(`cli.py`).
"""

import sys

from alembic_steady.cli import main
from alembic_steady.runner.api import Migrations

from . import PROJECT

if __name__ == "__main__":
    sys.exit(main(Migrations(PROJECT)))
