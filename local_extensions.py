"""Jinja filters of this template, loaded by cookiecutter through `_extensions` in
cookiecutter.json (its "local extensions": the template folder is on the import path)."""

from cookiecutter.utils import simple_filter


@simple_filter
def python_string(value: str) -> str:
    """`value` as the Python string literal that ruff's formatter keeps: double quotes, unless
    single quotes need fewer escapes. Answers may hold quotes and backslashes (never line breaks:
    the pre-generation hook refuses those)."""
    body = value.replace("\\", "\\\\")
    if value.count('"') > value.count("'"):
        return "'" + body.replace("'", "\\'") + "'"
    return '"' + body.replace('"', '\\"') + '"'
