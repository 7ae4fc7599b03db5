"""Validate the answers before anything is written; a non-zero exit leaves no files behind."""

import keyword
import re
import sys

SLUG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"

SLUG_RE = re.compile(r"^(?=.{1,40}$)[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

errors = []
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

if errors:
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    sys.exit(1)
