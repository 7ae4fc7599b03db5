"""Prune what the answers turned off and print the next commands. No network is used here."""

import shutil
from pathlib import Path

if "{{ cookiecutter.github_actions }}" != "yes":
    shutil.rmtree(Path(".github"))

if "{{ cookiecutter.web_framework }}" == "none":
    shutil.rmtree(Path("src/{{ cookiecutter.package_name }}/app"))
    Path("tests/test_app.py").unlink()
    Path("deploy/deployment.yaml").unlink()

print(
    """
Created {{ cookiecutter.project_slug }}. Next:

    cd {{ cookiecutter.project_slug }}
    make install    # .venv with the service and its dev tools
    make db-up      # a development PostgreSQL (Docker if it answers, else embedded)
    make migrate    # apply the migrations

`make help` lists every target.
"""
)
