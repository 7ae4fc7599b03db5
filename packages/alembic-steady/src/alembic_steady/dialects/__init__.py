"""The dialect seam: one `Dialect` interface (base.py), its PostgreSQL and MySQL implementations."""

from .base import Dialect, LockLost, for_url

__all__ = ["Dialect", "LockLost", "for_url"]
