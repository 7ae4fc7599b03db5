"""`make psql` / `make dbshell`: the server's shell on the configured database, with the client
matched to the server and the password kept off its command line."""

import sys

from ..dialects.base import for_url
from ..dialects.clients import ClientError
from ..project import Project


def main(project: Project, argv: list[str]) -> int:
    settings = project.settings()
    url = settings.sqlalchemy_url
    print(project.describe(url), file=sys.stderr)
    sys.stdout.flush()
    try:
        return for_url(url).clients().shell(url, settings, argv)
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return 1
