"""What a squashed baseline makes on PostgreSQL beyond autogenerate's tables, read from the
catalog of the database the chain built: schemas, extensions, enum types no table column uses
(autogenerate creates the others with their tables), functions and procedures, views and
materialized views, triggers, and each sequence's position (seed rows name their ids, so the
sequences would start again at 1). The squash's proof compares the result object by object, so
what is not read here (a domain, a grant) shows up there, named, before anything changes.
"""

from sqlalchemy import Connection, MetaData, text

from .base import SquashObjects

# The project's schemas: every one but PostgreSQL's own and the tests' probe.
_OURS = r"n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'test_probe')"
# Objects an extension made belong to its CREATE EXTENSION.
_NOT_EXTENSIONS = (
    "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = {catalog}::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)

SCHEMAS = f"""
SELECT quote_ident(n.nspname) FROM pg_namespace n
 WHERE {_OURS} AND n.nspname <> current_schema()
   AND {_NOT_EXTENSIONS.format(catalog="'pg_namespace'", oid="n.oid")}
 ORDER BY n.oid
"""
EXTENSIONS = """
SELECT quote_ident(e.extname), quote_ident(n.nspname) FROM pg_extension e
  JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname <> 'plpgsql' ORDER BY e.oid
"""
ENUMS = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname), t.typname,
       (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
          FROM pg_enum e WHERE e.enumtypid = t.oid)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype = 'e' AND {_OURS}
   AND {_NOT_EXTENSIONS.format(catalog="'pg_type'", oid="t.oid")}
 ORDER BY t.oid
"""
FUNCTIONS = f"""
SELECT pg_get_functiondef(p.oid),
       CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END || ' ' ||
       quote_ident(n.nspname) || '.' || quote_ident(p.proname) ||
       '(' || pg_get_function_identity_arguments(p.oid) || ')'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_OURS} AND p.prokind IN ('f', 'p')
   AND {_NOT_EXTENSIONS.format(catalog="'pg_proc'", oid="p.oid")}
 ORDER BY p.oid
"""
VIEWS = f"""
SELECT CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       coalesce(' WITH (' || array_to_string(c.reloptions, ', ') || ')', ''),
       pg_get_viewdef(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND {_OURS}
   AND {_NOT_EXTENSIONS.format(catalog="'pg_class'", oid="c.oid")}
 ORDER BY c.oid
"""
TRIGGERS = f"""
SELECT pg_get_triggerdef(g.oid) FROM pg_trigger g
  JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT g.tgisinternal AND {_OURS}
 ORDER BY g.oid
"""
SEQUENCES = r"""
SELECT quote_literal(quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename)),
       s.last_value
  FROM pg_sequences s
 WHERE s.last_value IS NOT NULL
   AND s.schemaname NOT LIKE 'pg\_%' AND s.schemaname NOT IN ('information_schema', 'test_probe')
 ORDER BY s.schemaname, s.sequencename
"""


def squash_objects(connection: Connection, metadata: MetaData) -> SquashObjects:
    objects = SquashObjects()
    rows = connection.execute
    for (schema,) in rows(text(SCHEMAS)):
        objects.before.append(f"CREATE SCHEMA {schema}")
        objects.drop_last.append(f"DROP SCHEMA {schema}")
    for name, schema in rows(text(EXTENSIONS)):
        objects.before.append(f"CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema}")
        objects.drop_last.insert(0, f"DROP EXTENSION {name}")
    # Enum types a table column uses are created with that table; every one goes after them.
    used = {
        getattr(column.type, "name", None)
        for table in metadata.tables.values()
        for column in table.columns
    }
    for qualified, name, labels in rows(text(ENUMS)):
        if name not in used:
            objects.before.append(f"CREATE TYPE {qualified} AS ENUM ({labels})")
        objects.drop_last.insert(0, f"DROP TYPE IF EXISTS {qualified}")
    functions = rows(text(FUNCTIONS)).all()
    if functions:
        # A function's body may name a table created after it: checked when it runs instead.
        objects.before.append("SET LOCAL check_function_bodies = off")
    for definition, signature in functions:
        objects.before.append(definition.strip())
        objects.drop_last.insert(0, f"DROP {signature}")
    for sequence, last_value in rows(text(SEQUENCES)):
        objects.after.append(f"SELECT setval({sequence}, {last_value})")
    for kind, name, options, definition in rows(text(VIEWS)):
        objects.after.append(f"CREATE {kind} {name}{options} AS\n{definition.strip().rstrip(';')}")
        objects.drop_first.insert(0, f"DROP {kind} {name}")
    # Last: a trigger on a seed table would otherwise fire for the seed rows.
    for (definition,) in rows(text(TRIGGERS)):
        objects.after.append(definition)
    return objects
