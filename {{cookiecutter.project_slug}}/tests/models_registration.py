"""What importing the models package alone registers, as env.py imports it; test_models.py checks
it against every module of the package.

tests/conftest.py imports this module before any test module can import a model module by hand
(and pytest autoloads no plugin here: see addopts in pyproject.toml). MODELS_FIRST_IMPORTED_HERE
says whether this module was indeed the first to import the package.
"""

import sys

from {{ cookiecutter.package_name }} import models

_IMPORT_ORDER = list(sys.modules)
MODELS_FIRST_IMPORTED_HERE = _IMPORT_ORDER.index(__name__) < _IMPORT_ORDER.index(models.__name__)
TABLES_FROM_THE_PACKAGE = frozenset(models.metadata.tables)
MODULES_FROM_THE_PACKAGE = sorted(m for m in sys.modules if m.startswith(f"{models.__name__}."))
