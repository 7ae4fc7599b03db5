"""The stairway's schema snapshots on PostgreSQL: every object a revision can create, read object
by object, and after each step only the objects it touched (event triggers note them), so the
cost per step stays flat as the chain grows.
"""

from collections.abc import Callable, Iterable

from sqlalchemy import Connection, text

Row = tuple[str, str]  # (what, description), e.g. ("column", "public.item.name text not null")
Rows = tuple[Row, ...]
# (kind, oid): "r" pg_class, "t" pg_type, "f" pg_proc, "s" pg_namespace, "e" pg_extension
Key = tuple[str, int]

# The project's schemas: every one but PostgreSQL's own and the tests' probe.
_SCHEMAS = r"nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'test_probe')"
# What a revision can create, per object: each relation (table, index, sequence, view, ...) with
# its columns (an index's are in its definition: its own keep the names they had when it was
# built, which a renamed column does not change), constraints (not PostgreSQL 18's NOT NULL ones:
# the column says not null, and their generated names keep a renamed table's old name), index or
# view definition, sequence options, triggers, policies, rules, grants and comments; each enum,
# domain or range type; each function, procedure or aggregate;
# each schema and extension. Grants are printed when they differ from PostgreSQL's defaults (a
# REVOKE of what a GRANT gave leaves explicit defaults behind). Owners are left out: they depend on
# who runs the tests.
_OBJECTS = """
ns AS (SELECT oid, nspname FROM pg_namespace WHERE @schemas@),
rel AS (
  SELECT c.oid, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence,
         nullif(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's'::"char" ELSE 'r' END,
                                     c.relowner)) AS grants,
         quote_ident(ns.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relname NOT LIKE 'alembic_version%' AND c.relkind <> 't' AND @relations@
), typ AS (
  SELECT t.oid, t.typtype, nullif(t.typacl, acldefault('T', t.typowner)) AS grants,
         t.typbasetype, t.typtypmod, t.typnotnull, t.typdefault,
         quote_ident(ns.nspname) || '.' || quote_ident(t.typname) AS name
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
   WHERE t.typtype IN ('e', 'd', 'r', 'm') AND @types@
), fun AS (
  SELECT p.oid, p.prokind, nullif(p.proacl, acldefault('f', p.proowner)) AS grants,
         quote_ident(ns.nspname) || '.' || quote_ident(p.proname)
         || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
   WHERE @functions@
), sch AS (
  SELECT n.oid, n.nspname, nullif(n.nspacl, acldefault('n', n.nspowner)) AS grants
    FROM pg_namespace n WHERE @full@ AND @schemas@
), ext AS (
  SELECT e.oid, e.extname, e.extversion, e.extnamespace::regnamespace::text AS schema
    FROM pg_extension e WHERE @full@
)
""".replace("@schemas@", _SCHEMAS)
_ROWS = """
SELECT 'r', rel.oid, 'relation', rel.relkind::text || ' ' || rel.name
       || CASE WHEN rel.relpersistence <> 'p' THEN ' unlogged/temp ' || rel.relpersistence::text
               ELSE '' END
       || CASE WHEN rel.relrowsecurity THEN ' row security' ELSE '' END
       || CASE WHEN rel.relforcerowsecurity THEN ' forced' ELSE '' END
       || coalesce(' grants ' || rel.grants::text, '')
       || coalesce(' comment ' || obj_description(rel.oid, 'pg_class'), '')
  FROM rel
UNION ALL
SELECT 'r', rel.oid, 'column', rel.name || '.' || quote_ident(a.attname) || ' '
       || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END
       || coalesce(' grants ' || nullif(a.attacl, '{}')::text, '')
       || coalesce(' comment ' || col_description(rel.oid, a.attnum), '')
  FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind NOT IN ('i', 'I')
UNION ALL
SELECT 'r', rel.oid, 'constraint', rel.name || ' ' || quote_ident(k.conname) || ' '
       || pg_get_constraintdef(k.oid)
       || coalesce(' comment ' || obj_description(k.oid, 'pg_constraint'), '')
  FROM rel JOIN pg_constraint k ON k.conrelid = rel.oid AND k.contype <> 'n'
UNION ALL
SELECT 'r', rel.oid, 'index', pg_get_indexdef(rel.oid) FROM rel WHERE rel.relkind IN ('i', 'I')
UNION ALL
SELECT 'r', rel.oid, 'view', rel.name || ' AS ' || pg_get_viewdef(rel.oid)
  FROM rel WHERE rel.relkind IN ('v', 'm')
UNION ALL
SELECT 'r', rel.oid, 'sequence', rel.name || ' ' || format_type(s.seqtypid, NULL)
       || concat_ws(' ', ' start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin,
                    'max', s.seqmax, 'cache', s.seqcache)
       || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
  FROM rel JOIN pg_sequence s ON s.seqrelid = rel.oid
UNION ALL
SELECT 'r', rel.oid, 'trigger', pg_get_triggerdef(g.oid) || ' enabled ' || g.tgenabled::text
       || coalesce(' comment ' || obj_description(g.oid, 'pg_trigger'), '')
  FROM rel JOIN pg_trigger g ON g.tgrelid = rel.oid WHERE NOT g.tgisinternal
UNION ALL
SELECT 'r', rel.oid, 'policy', rel.name || ' ' || quote_ident(p.polname) || ' '
       || p.polcmd::text || CASE WHEN p.polpermissive THEN ' permissive' ELSE ' restrictive' END
       || ' to ' || p.polroles::regrole[]::text
       || coalesce(' using ' || pg_get_expr(p.polqual, p.polrelid), '')
       || coalesce(' check ' || pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM rel JOIN pg_policy p ON p.polrelid = rel.oid
UNION ALL
SELECT 'r', rel.oid, 'rule', pg_get_ruledef(w.oid)
  FROM rel JOIN pg_rewrite w ON w.ev_class = rel.oid WHERE w.rulename <> '_RETURN'
UNION ALL
SELECT 't', typ.oid, 'type', typ.name || ' ' || coalesce(
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
            FROM pg_enum e WHERE e.enumtypid = typ.oid),
         typ.typtype::text || ' ' || format_type(typ.typbasetype, typ.typtypmod))
       || CASE WHEN typ.typnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || typ.typdefault, '')
       || coalesce(' grants ' || typ.grants::text, '')
       || coalesce(' comment ' || obj_description(typ.oid, 'pg_type'), '')
  FROM typ
UNION ALL
SELECT 't', typ.oid, 'constraint', typ.name || ' ' || quote_ident(k.conname) || ' '
       || pg_get_constraintdef(k.oid)
  FROM typ JOIN pg_constraint k ON k.contypid = typ.oid
UNION ALL
SELECT 'f', fun.oid, 'function', fun.prokind::text || ' ' || fun.name || ' '
       || CASE WHEN fun.prokind = 'a' THEN '' ELSE pg_get_functiondef(fun.oid) END
       || coalesce(' grants ' || fun.grants::text, '')
       || coalesce(' comment ' || obj_description(fun.oid, 'pg_proc'), '')
  FROM fun
UNION ALL
SELECT 's', sch.oid, 'schema', quote_ident(sch.nspname)
       || coalesce(' grants ' || sch.grants::text, '')
       || coalesce(' comment ' || obj_description(sch.oid, 'pg_namespace'), '')
  FROM sch
UNION ALL
SELECT 'e', ext.oid, 'extension', ext.extname || ' ' || ext.extversion || ' in ' || ext.schema
  FROM ext
"""


def _objects(**filters: str) -> str:
    """_OBJECTS with each @name@ filled in."""
    text = _OBJECTS
    for name, condition in filters.items():
        text = text.replace(f"@{name}@", condition)
    return text


SNAPSHOT_ALL = (
    "WITH " + _objects(relations="TRUE", types="TRUE", functions="TRUE", full="TRUE") + _ROWS
)
# One round trip per step: take the objects the event triggers noted, clear the notes, and read
# those objects again by oid, so the cost depends on what the step touched, not on the size of
# the schema. A relation is read again with what its rows print and can change under it without
# an event of its own: its indexes, the foreign keys and views that refer to it, and the tables
# whose columns use a touched type or whose triggers call a touched function. Rows of kind 'k'
# list every touched object, also those now gone; a row of kind 'x' asks for a full read.
# It runs inside a PL/pgSQL function (see PROBE_SQL), which plans it once per connection: sent as a
# statement, it would be planned again after every step, since the driver drops its prepared
# statements whenever a migration runs DDL.
_TOUCHED_ROWS = (
    """
WITH events AS (DELETE FROM test_probe.touched RETURNING kind::text AS kind, oid, name),
direct AS (
  SELECT kind, oid FROM events WHERE kind IN ('r', 't', 'f')
  UNION
  SELECT 'r', to_regclass(name)::oid FROM events WHERE kind = 'l'
  UNION
  SELECT 'r', g.tgrelid FROM events JOIN pg_trigger g ON g.oid = events.oid WHERE kind = 'g'
  UNION
  SELECT 'r', p.polrelid FROM events JOIN pg_policy p ON p.oid = events.oid WHERE kind = 'p'
  UNION
  SELECT 'r', w.ev_class FROM events JOIN pg_rewrite w ON w.oid = events.oid WHERE kind = 'w'
),
touched AS (
  SELECT kind, oid FROM direct WHERE oid IS NOT NULL
  UNION
  SELECT 'r', i.indexrelid FROM direct JOIN pg_index i ON i.indrelid = direct.oid
   WHERE direct.kind = 'r'
  UNION
  SELECT 'r', k.conrelid FROM direct JOIN pg_constraint k ON k.confrelid = direct.oid
   WHERE direct.kind = 'r'
  UNION
  SELECT 'r', w.ev_class FROM direct
    JOIN pg_depend d ON d.refobjid = direct.oid AND d.refclassid = 'pg_class'::regclass
                    AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite w ON w.oid = d.objid
   WHERE direct.kind = 'r'
  UNION
  SELECT 'r', a.attrelid FROM direct JOIN pg_attribute a ON a.atttypid = direct.oid
   WHERE direct.kind = 't'
  UNION
  SELECT 'r', g.tgrelid FROM direct JOIN pg_trigger g ON g.tgfoid = direct.oid
   WHERE direct.kind = 'f'
),"""
    + _objects(
        relations="c.oid IN (SELECT oid FROM touched WHERE kind = 'r')",
        types="t.oid IN (SELECT oid FROM touched WHERE kind = 't')",
        functions="p.oid IN (SELECT oid FROM touched WHERE kind = 'f')",
        full="FALSE",
    )
    + """
SELECT 'k'::text, oid, kind, ''::text FROM touched
UNION ALL
SELECT kind, 0::oid, '', '' FROM events WHERE kind IN ('x', 'u')
UNION ALL"""
    + _ROWS
)
SNAPSHOT_TOUCHED = "SELECT * FROM test_probe.touched_rows()"

# Event triggers note every object a DDL statement creates, alters or drops, so a snapshot only
# re-reads those. What they cannot pin to a relation, type or function is noted as kind 'x',
# which makes the next snapshot read everything again: always correct, only slower. An object the
# snapshot reads none of (an operator, a collation, a cast, statistics, a publication, a default
# privilege, a GRANT on a database, ...), made or altered, or dropped by name, outside an
# extension (whose row covers its members), is noted as kind 'u': read everything too, and the
# walk cannot vouch for a round trip that touched it.
_READ_CLASSES = (
    "'pg_namespace'::regclass, 'pg_extension'::regclass, 'pg_constraint'::regclass, "
    "'pg_attrdef'::regclass"
)
_READ_GRANTS = "'TABLE', 'SEQUENCE', 'FUNCTION', 'PROCEDURE', 'ROUTINE', 'TYPE', 'DOMAIN', 'SCHEMA'"
_PROBE = (
    "CREATE SCHEMA test_probe",
    'CREATE TABLE test_probe.touched (kind "char", oid oid, name text)',
    r"""
CREATE FUNCTION test_probe.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_probe.touched
  SELECT CASE c.classid WHEN 'pg_class'::regclass THEN 'r' WHEN 'pg_type'::regclass THEN 't'
                        WHEN 'pg_proc'::regclass THEN 'f' WHEN 'pg_trigger'::regclass THEN 'g'
                        WHEN 'pg_policy'::regclass THEN 'p' WHEN 'pg_rewrite'::regclass THEN 'w'
                        ELSE CASE WHEN c.in_extension OR c.classid IN (@read_classes@)
                                    OR c.command_tag IN ('GRANT', 'REVOKE')
                                       AND c.object_type IN (@read_grants@)
                                  THEN 'x' ELSE 'u' END END,
         c.objid, NULL
    FROM pg_event_trigger_ddl_commands() c
   WHERE c.schema_name IS NULL OR c.schema_name NOT LIKE 'pg\_%' AND c.schema_name <> 'test_probe';
END $$
""",
    # A dropped trigger, policy, rule, constraint or default names its table (schema, table,
    # name): that table is read again by name, if it still exists.
    r"""
CREATE FUNCTION test_probe.on_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_probe.touched
  SELECT CASE WHEN d.classid = 'pg_class'::regclass THEN 'r'
              WHEN d.classid = 'pg_type'::regclass THEN 't'
              WHEN d.classid = 'pg_proc'::regclass THEN 'f'
              WHEN d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass,
                                 'pg_rewrite'::regclass, 'pg_constraint'::regclass,
                                 'pg_attrdef'::regclass)
                   AND cardinality(d.address_names) = 3 THEN 'l'
              WHEN NOT d.original OR d.classid IN (@read_classes@) THEN 'x'
              ELSE 'u' END,
         d.objid, quote_ident(d.address_names[1]) || '.' || quote_ident(d.address_names[2])
    FROM pg_event_trigger_dropped_objects() d
   WHERE d.schema_name IS NULL OR d.schema_name NOT LIKE 'pg\_%' AND d.schema_name <> 'test_probe';
END $$
""",
    # OUT columns named apart from the query's own, so that PL/pgSQL reads the query as written.
    "CREATE FUNCTION test_probe.touched_rows() "
    "RETURNS TABLE (out_kind text, out_oid oid, out_what text, out_item text) "
    f"LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY {_TOUCHED_ROWS}; END $$",
    "CREATE EVENT TRIGGER test_probe_ddl ON ddl_command_end EXECUTE FUNCTION test_probe.on_ddl()",
    "CREATE EVENT TRIGGER test_probe_drop ON sql_drop EXECUTE FUNCTION test_probe.on_drop()",
)
PROBE_SQL = tuple(
    statement.replace("@read_classes@", _READ_CLASSES).replace("@read_grants@", _READ_GRANTS)
    for statement in _PROBE
)
# How many rows this session has inserted, updated or deleted in each table of the project's
# schemas: what its earlier transactions sent to the shared statistics, and what it holds unsent
# (its open transaction's included). The session sends at its idle moments, between
# statements, moving counts from one part to the other: the sum only grows, and counts every
# statement (a function's, a DO block's, one outside a transaction). PostgreSQL 15 on; before
# it, sent counts reached a collector process some time later. With each table's file on disk:
# a TRUNCATE counts no row, and it, like a rewrite, gives the table a new file.
ROW_CHANGES = """
SELECT c.oid, pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
              + pg_stat_get_tuples_deleted(c.oid) + pg_stat_get_xact_tuples_inserted(c.oid)
              + pg_stat_get_xact_tuples_updated(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid),
       c.relfilenode
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm') AND c.relname NOT LIKE 'alembic_version%' AND @schemas@
""".replace("@schemas@", _SCHEMAS)


def snapshot(connection: Connection) -> set[Row]:
    """Every object's rows, read whole (no probe needed)."""
    return {(str(what), str(item)) for _, _, what, item in connection.execute(text(SNAPSHOT_ALL))}


class PostgreSQLSchema:
    """The project's schemas, object by object, kept current after each step.

    With event triggers (they need a superuser, which the test servers have), a refresh re-reads
    only the objects the step touched; without them, every refresh reads the whole schema.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        is_superuser = connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()
        self.probed = bool(is_superuser)
        if self.probed:
            for statement in PROBE_SQL:
                connection.exec_driver_sql(statement)
        self.objects: dict[Key, Rows] = self._read(SNAPSHOT_ALL)
        self.created: set[int] | None = None
        # Without the event triggers, no step's notes; before PostgreSQL 15, no row counts.
        version = connection.dialect.server_version_info or (0,)
        self.complete = self.probed and version >= (15,)
        self.unread = not self.probed
        # Each relation's key by its name row: ALTER COLUMN TYPE rebuilds the table's indexes
        # under new oids without an event for the old ones, which would otherwise stay behind.
        self.by_name: dict[Row, Key] = {}
        self._index_names(self.objects)
        connection.commit()

    def _index_names(self, objects: dict[Key, Rows]) -> None:
        for key, rows in objects.items():
            for row in rows:
                if row[0] == "relation":
                    self.by_name[row] = key

    def refresh(self) -> tuple[set[Row], set[Row]]:
        """Re-read what changed since the last refresh: the rows of the changed objects as they
        were before, and as they are now."""
        if self.probed:
            touched: set[Key] = set()
            fresh = self._read(SNAPSHOT_TOUCHED, touched)
            self.unread = ("u", 0) in touched
            if ("x", 0) not in touched:
                self.created = _new_relations(fresh, self.objects)
                # `fresh` holds the touched objects that still exist; the others are gone.
                old = [self.objects.pop(key) for key in touched if key in self.objects]
                # A new object under the name of an untouched one replaced it (a rebuilt index).
                for key, rows in fresh.items():
                    for row in rows:
                        replaced = self.by_name.get(row) if row[0] == "relation" else None
                        if replaced not in (None, key) and replaced in self.objects:
                            old.append(self.objects.pop(replaced))
                self.objects.update(fresh)
                self._index_names(fresh)
                return _rows(old), _rows(fresh.values())
        old_objects, self.objects = self.objects, self._read(SNAPSHOT_ALL)
        self.created = _new_relations(self.objects, old_objects)
        return _rows(old_objects.values()), _rows(self.objects.values())

    def row_changes(self) -> dict[int, tuple[int, int]] | None:
        if not self.complete:
            return None
        found = self.connection.execute(text(ROW_CHANGES))
        return {int(oid): (int(count), int(file)) for oid, count, file in found}

    def checkpoint(self) -> Callable[[], None]:
        objects, by_name, created, unread = (
            dict(self.objects),
            dict(self.by_name),
            self.created,
            self.unread,
        )

        def restore() -> None:
            self.objects, self.by_name = dict(objects), dict(by_name)
            self.created, self.unread = created, unread

        return restore

    def _read(self, query: str, touched: set[Key] | None = None) -> dict[Key, Rows]:
        grouped: dict[Key, list[tuple[str, str]]] = {}
        for kind, oid, what, item in self.connection.execute(text(query)):
            if kind == "k" and touched is not None:
                touched.add((what, int(oid)))
            elif kind in ("x", "u") and touched is not None:
                touched.add(("x", 0))  # read everything again
                touched.add((kind, 0))
            else:
                grouped.setdefault((kind, int(oid)), []).append((what, item))
        return {key: tuple(sorted(rows)) for key, rows in grouped.items()}


def _new_relations(now: dict[Key, Rows], before: dict[Key, Rows]) -> set[int]:
    return {oid for kind, oid in now if kind == "r" and (kind, oid) not in before}


def _rows(objects: Iterable[Rows]) -> set[Row]:
    # A set is enough: within one schema every row names its object, so none repeats.
    return {row for rows in objects for row in rows}
