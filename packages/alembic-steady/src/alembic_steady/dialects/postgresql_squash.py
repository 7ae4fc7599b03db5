"""What a squashed baseline makes on PostgreSQL beyond autogenerate's tables, read from the
catalog of the database the chain built: schemas, extensions, enum types no table column uses
(autogenerate creates the others with their tables), sequences other than a serial key's,
functions and procedures, views and
materialized views, triggers, and each sequence's position (seed rows name their ids, so the
sequences would start again at 1). The squash's proof compares the result object by object, so
what is not read here (a domain, a grant) shows up there, named, before anything changes.
"""

import re

from sqlalchemy import Connection, DefaultClause, MetaData, text

from .base import SquashObjects

# The project's schemas: every one but PostgreSQL's own and the tests' probe.
_OURS = r"n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'test_probe')"
# Objects an extension made belong to its CREATE EXTENSION.
_NOT_EXTENSIONS = (
    "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = {catalog}::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)

# A column default's sequence, as PostgreSQL prints it: nextval('name'::regclass), the name
# schema-qualified and quoted where it needs to be.
_NEXTVAL = re.compile(r"""nextval\('(?:[^'.]+\.)?"?([^'"]+)"?'::regclass\)""")

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
# Sequences of their own: neither an identity column's nor an extension's. A serial key's is made
# by its table (SQLAlchemy writes SERIAL for it); the others are made here, with their options,
# and given back to the column that owns them once the tables exist.
OWN_SEQUENCES = f"""
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relname,
       format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache,
       s.seqcycle,
       (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.'
               || quote_ident(a.attname)
          FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
          JOIN pg_namespace tn ON tn.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a')
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_OURS}
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype IN ('i', 'e'))
 ORDER BY c.oid
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


def _serial_keys(metadata: MetaData) -> set[str]:
    """The sequences SQLAlchemy's SERIAL makes: one per table whose key is a lone integer column
    that counts from `<table>_<column>_seq`. A key counting from another sequence (its table was
    renamed) is written with its own default instead, and its sequence made here: `metadata`'s
    column is told so before autogenerate reads it."""
    serial = set()
    for table in metadata.tables.values():
        keys = list(table.primary_key.columns)
        default = keys[0].server_default if len(keys) == 1 else None
        if not isinstance(default, DefaultClause):  # none, or an identity
            continue
        counted = _NEXTVAL.search(str(default.arg))
        if counted is None:
            continue
        name = f"{table.name}_{keys[0].name}_seq"
        if counted.group(1) == name:
            serial.add(name)
        else:
            keys[0].autoincrement = False
    return serial


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
    serial = _serial_keys(metadata)
    owned = []
    for qualified, name, type_, step, low, high, start, cache, cycle, owner in rows(
        text(OWN_SEQUENCES)
    ):
        if name in serial:
            continue
        objects.before.append(
            f"CREATE SEQUENCE {qualified} AS {type_} INCREMENT BY {step} MINVALUE {low} "
            f"MAXVALUE {high} START WITH {start} CACHE {cache} {'' if cycle else 'NO '}CYCLE"
        )
        if owner is not None:
            owned.append(f"ALTER SEQUENCE {qualified} OWNED BY {owner}")
        objects.drop_last.insert(0, f"DROP SEQUENCE IF EXISTS {qualified}")
    objects.after.extend(owned)
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
