"""The HTTP service: `create_app()` builds it, `uvicorn --factory` serves it (see `make run`).

The app never migrates the database itself: a job (`python -m {{ cookiecutter.package_name }}.migrations
upgrade`) does, and `/health/ready` answers 503 until the database is at head.
"""

from .factory import create_app

__all__ = ["create_app"]
