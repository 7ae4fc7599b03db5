"""Lint each revision's own SQL with squawk: `make lint-migrations`.

Each revision is rendered offline on its own (`alembic upgrade <down>:<rev> --sql`), so a finding
points at the revision that causes it rather than at the whole chain. A reviewed finding is
accepted for one revision with a comment line in its file:

    # squawk-ignore: prefer-robust-stmts, require-concurrent-index-creation
"""

import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

IGNORE_LINE = re.compile(r"^#\s*squawk-ignore:\s*(.+)$", re.M)
# Alembic's own bookkeeping table is not the revision's doing: leave it out of the findings.
VERSION_TABLE = re.compile(r"^CREATE TABLE alembic_version \(.*?\);\n", re.M | re.S)


def revision_sql(config: Config, revision: Script) -> str:
    down = revision.down_revision
    start = "base" if down is None else down
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, f"{start}:{revision.revision}", sql=True)
    return VERSION_TABLE.sub("", buffer.getvalue())


def main() -> int:
    squawk = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
    if squawk is None:
        print("squawk is not installed: run `make install` (it comes with squawk-cli).")
        return 1
    config = Config("alembic.ini")
    config.attributes["configure_logger"] = False  # findings only, no Alembic INFO lines
    script = ScriptDirectory.from_config(config)
    failed = unrendered = 0
    with tempfile.TemporaryDirectory() as tmp:
        for revision in reversed(list(script.walk_revisions())):
            if isinstance(revision.down_revision, tuple):
                continue  # a merge point runs no SQL of its own
            sql_file = Path(tmp) / f"{Path(revision.path).stem}.sql"
            try:
                sql = revision_sql(config, revision)
            except Exception as exc:
                # Named, and the other revisions still linted (e.g. one that reads data through
                # op.get_bind(), which an offline run has not got).
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                if not isinstance(exc, CommandError):  # env.py's answer names the cause itself
                    reason = f"{type(exc).__name__}: {reason}"
                print(f"{Path(revision.path).name}: not linted: {reason}")
                unrendered += 1
                continue
            sql_file.write_text(sql, encoding="utf-8")
            ignored = IGNORE_LINE.search(Path(revision.path).read_text(encoding="utf-8"))
            args = [squawk, str(sql_file)]
            if not sys.stdout.isatty():
                # squawk colours its report regardless (and ignores NO_COLOR): plain lines in
                # logs and CI instead, one finding per line.
                args += ["--reporter", "gcc"]
            if ignored:
                args += ["--exclude", ",".join(rule.strip() for rule in ignored[1].split(","))]
            result = subprocess.run(args, check=False)
            failed += result.returncode != 0
    print(f"squawk: {failed} revision(s) with findings." if failed else "squawk: no findings.")
    if unrendered:
        print(f"{unrendered} revision(s) could not be rendered offline and were not linted.")
    return 1 if failed or unrendered else 0


if __name__ == "__main__":
    sys.exit(main())
