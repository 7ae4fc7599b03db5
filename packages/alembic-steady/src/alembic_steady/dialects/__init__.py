"""The dialect seam: one `Dialect` interface (base.py), its PostgreSQL and MySQL implementations."""

from .base import Dialect, LockLost, by_name, for_url, parse_url

__all__ = ["Dialect", "LockLost", "by_name", "for_url", "parse_url"]
