"""The library's tests, by tier: unit/ (no database), postgresql/ (embedded PostgreSQL, or the
server TEST_DATABASE_URL names), mysql/ (the server TEST_MYSQL_URL names; skipped, saying so,
without one). Run the tiers as separate pytest runs: each names its own `migration_project`.

The integration tiers use the library's own pytest plugin, as a project does.
"""

pytest_plugins = ["alembic_steady.testing.plugin"]
