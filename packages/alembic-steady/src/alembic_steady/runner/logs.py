"""Alembic's log lines as a run prints them: each said once."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Only warnings from `logger_name` meanwhile: configuring a second context on the same
    connection would print Alembic's "Context impl" lines again, which reads like a second run."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
