"""A few generated rows in every table (PostgreSQL), so the migration walk runs on tables that
hold data.

A revision that adds a NOT NULL column without a default, narrows a type, makes a column NOT NULL
or adds a unique constraint passes on empty tables and fails on the first populated database.
Before each upgrade step, the walk gives every table that appeared since the last step three rows
made from its column types, defaults and foreign keys (no code per model):

- the first two rows are alike in every column that is not unique, so a new unique constraint
  meets a duplicate; the third leaves each nullable column NULL, so a new NOT NULL meets a NULL;
- integers sit above the range of the next narrower type, strings fill their declared length, so
  a narrowing type change meets a value that does not fit;
- columns with a default (identity, SERIAL, server_default) get their default; a foreign key
  refers to a row of its table.

A table's rows go in with one statement, through a session function whose exception handler is
a savepoint on the server (one round trip, not SAVEPOINT, INSERT and RELEASE one by one); when a
CHECK or a composite key refuses one, each row is tried on its own and the others stay. Only
tables new since the last step are read, so the cost per step stays flat as the chain grows.
Hand-written data checks (testing/data_checks.py) stay for data a revision moves.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from alembic.util import CommandError
from sqlalchemy import Connection, text

from .base import TableFiller

ROWS = 3
_SCHEMAS = r"n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'test_probe')"
NEW_TABLES = f"""
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_SCHEMAS}
   AND c.relname NOT LIKE 'alembic_version%' AND NOT c.oid = ANY(CAST(:seen AS oid[]))
"""
# Among the relations a step created: an index lookup, where the scan above compares every
# relation of the database with every table seen (thousands of times over, past a large baseline).
NEW_TABLES_AMONG = NEW_TABLES + "   AND c.oid = ANY(CAST(:among AS oid[]))\n"
# Per column of the new tables: what it holds, whether it fills itself, is unique, refers to. Asked
# only when NEW_TABLES found some: planning it costs more than the rest of a step's reads. "char"
# columns are cast to text: the driver returns them as bytes, which match no category below.
COLUMNS = """
SELECT a.attrelid, a.attrelid::regclass::text, quote_ident(a.attname),
       format_type(a.atttypid, a.atttypmod), t.typcategory::text, t.typtype::text,
       a.atttypid::regtype::text, a.atttypmod, a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = a.attrelid AND i.indisunique AND a.attnum = ANY(i.indkey)),
       (SELECT k.confrelid::regclass::text || ' ' || quote_ident(r.attname)
          FROM pg_constraint k
          JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = k.confkey[1]
         WHERE k.conrelid = a.attrelid AND k.contype = 'f' AND k.conkey = ARRAY[a.attnum]
         LIMIT 1)
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = ANY(CAST(:tables AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""
# Runs INSERT statements in order, each undone alone if refused; stops at the first refused one and
# answers its position (from 1), or 0 when all went in: the rows of every new table in one round
# trip. In pg_temp, so it needs no privilege beyond a session's temporary objects and leaves
# nothing behind in the database.
TRY_INSERTS = """
CREATE OR REPLACE FUNCTION pg_temp.alembic_steady_try(statements text[]) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(statements, 1), 0) LOOP
    BEGIN
      EXECUTE statements[i];
    EXCEPTION WHEN OTHERS THEN
      RETURN i;
    END;
  END LOOP;
  RETURN 0;
END $$
"""
# Above the next narrower type: 2**14, 2**30, 2**40.
INTEGER_BASE = {"smallint": 16384, "integer": 1073741824, "bigint": 1099511627776}
TIMES = ("date", "time", "timestamp", "timetz", "timestamptz", "interval")


@dataclass
class _Column:
    name: str
    type: str  # as format_type prints it, e.g. character varying(20)
    category: str  # pg_type.typcategory
    typtype: str  # 'e' for an enum
    base: str  # the type without modifiers, e.g. character varying
    typmod: int
    not_null: bool
    fills_itself: bool
    unique: bool
    refers: str | None  # "referenced_table column"

    def value(self, row: int) -> str | None:
        """SQL for this column in row `row`, or None when nothing fits."""
        if self.refers:
            table, column = self.refers.rsplit(" ", 1)
            return f"(SELECT {column} FROM {table} ORDER BY 1 LIMIT 1)"
        # Non-unique columns hold the same value in every row: a new unique constraint fails.
        n = row if self.unique else 0
        cast = f"CAST(%s AS {self.type})"
        if self.base in INTEGER_BASE:
            return str(INTEGER_BASE[self.base] + n)
        if self.category == "N":
            return cast % f"{n + 1}"
        if self.category == "S":
            # Declared length filled: a shorter varchar no longer holds it.
            length = self.typmod - 4 if self.typmod > 4 else 40
            return cast % ("'" + f"{n}".ljust(length, "x")[:length] + "'")
        if self.category == "B":
            return "true"
        if self.category == "D" or self.base in TIMES:
            return cast % ("'1 day'" if self.base == "interval" else "now()")
        if self.typtype == "e":
            return f"(enum_range(NULL::{self.type}))[1]"
        if self.base == "uuid":
            return "gen_random_uuid()"
        if self.base in ("json", "jsonb"):
            return cast % ('\'{"row": ' + str(n) + "}'")
        if self.category == "A":
            return "'{}'"
        if self.base == "bytea":
            return f"'\\x0{n}'"
        return None


class PostgreSQLRows(TableFiller):
    """Puts generated rows in each table that appears during a walk."""

    def __init__(self, connection: Connection, given: Mapping[str, str | None]) -> None:
        super().__init__(given)
        self.connection = connection
        self.seen: list[int] = []
        self.seen_names: set[str] = set()
        connection.exec_driver_sql(TRY_INSERTS)

    def fill_new_tables(self, among: Collection[int] | None = None) -> None:
        if among is None:
            found = self.connection.execute(text(NEW_TABLES), {"seen": self.seen})
        elif among:
            found = self.connection.execute(
                text(NEW_TABLES_AMONG), {"seen": self.seen, "among": sorted(among)}
            )
        else:  # no step created a relation: nothing can be new
            return
        new = [oid for (oid,) in found]
        if not new:
            return
        self.seen.extend(new)
        tables: dict[int, tuple[str, list[_Column]]] = {}
        for oid, table, *fields in self.connection.execute(text(COLUMNS), {"tables": new}):
            tables.setdefault(oid, (table, []))[1].append(_Column(*fields))
        # Referenced tables first, so a foreign key finds a row.
        generated: list[tuple[str, list[_Column], list[list[str]]]] = []
        for table, columns in _referenced_first(list(tables.values())):
            self.seen_names.add(table)
            if table in self.given:
                self._insert_generated(generated)  # the tables before it, in order
                generated = []
                self._insert_given(table)
                continue
            rows = [values for row in range(ROWS) if (values := _row(columns, row)) is not None]
            if rows:
                generated.append((table, columns, rows))
        self._insert_generated(generated)

    def never_seen(self) -> list[str]:
        return sorted(set(self.given) - self.seen_names)

    def _insert_given(self, table: str) -> None:
        """The rows a revision's marker gives the table (none for `no rows for`)."""
        statement = self.given[table]
        if statement is None:
            return
        try:
            self.connection.exec_driver_sql(statement)
        except Exception as exc:  # the walk ends here: say which line gave the rows
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise CommandError(
                f"The rows the `# migration-tests: rows for {table}` line gives were refused: "
                f"{reason}. Fix that INSERT statement."
            ) from exc
        self.filled.append(table)

    def _insert_generated(self, tables: list[tuple[str, list[_Column], list[list[str]]]]) -> None:
        """Each table's rows in one statement, the tables in order in one round trip. Where a
        table refuses its statement (a CHECK, a composite key), its rows go in one by one, the
        others staying, before the tables after it."""
        while tables:
            refused = self._try([_insert(*table) for table in tables])
            done = tables if not refused else tables[: refused - 1]
            self.filled.extend(table for table, _, _ in done)
            if not refused:
                return
            table, columns, rows = tables[refused - 1]
            went_in = [row for row in rows if not self._try([_insert(table, columns, [row])])]
            if went_in:
                self.filled.append(table)
            tables = tables[refused:]

    def _try(self, statements: list[str]) -> int:
        """The position (from 1) of the first statement refused, undone alone; 0: all ran."""
        tried = text("SELECT pg_temp.alembic_steady_try(CAST(:statements AS text[]))")
        return int(self.connection.execute(tried, {"statements": statements}).scalar_one())


def _insert(table: str, columns: list[_Column], rows: list[list[str]]) -> str:
    names = [column.name for column in columns if not column.fills_itself]
    if not names:  # every column fills itself
        names, rows = [columns[0].name], [["DEFAULT"]] * len(rows)
    values = ", ".join(f"({', '.join(row)})" for row in rows)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {values}"


def _row(columns: list[_Column], row: int) -> list[str] | None:
    """The values of row `row` for the columns that do not fill themselves, or None when a NOT
    NULL column gets no value. The last row leaves every nullable column NULL: a later NOT NULL
    meets one."""
    values: list[str] = []
    for column in columns:
        if column.fills_itself:
            continue
        value = None if row == ROWS - 1 and not column.not_null else column.value(row)
        if value is None and column.not_null:
            return None
        values.append(value or "NULL")
    return values


def _referenced_first(
    tables: list[tuple[str, list[_Column]]],
) -> list[tuple[str, list[_Column]]]:
    names = {table for table, _ in tables}
    ordered: list[tuple[str, list[_Column]]] = []
    placed: set[str] = set()
    pending = list(tables)
    while pending:
        ready = [
            entry
            for entry in pending
            if all(
                column.refers is None
                or column.refers.rsplit(" ", 1)[0] in placed
                or column.refers.rsplit(" ", 1)[0] not in names
                or column.refers.rsplit(" ", 1)[0] == entry[0]
                for column in entry[1]
            )
        ] or pending[:1]  # a cycle: start anywhere, its foreign keys may stay NULL
        for entry in ready:
            pending.remove(entry)
            placed.add(entry[0])
            ordered.append(entry)
    return ordered
