"""The migration tests as a pytest plugin: a real server, one walk from base to head (every
revision up, down and up again on tables holding rows, data checks on the way), and the tests
that read it. A project's conftest.py:

    pytest_plugins = ["alembic_steady.testing.plugin"]

    @pytest.fixture(scope="session")
    def migration_project() -> Project:
        return PROJECT

and its test module imports the tests it wants from `alembic_steady.testing.checks`.
"""
