"""What a query sent to the SQL endpoint may be, decided before it runs.

The engine session is already `readonly = 1` and filtered per project; this guard closes what
those leave open: a second statement after `;` (never checked, yet executed), `INTO OUTFILE`,
`SHOW PROCESSLIST` and other non-SELECT statements, scalar functions that read files or other
data (`file()`, `dictGet`, …), table functions that read around the filters (`merge()`, …), and
names of tables outside the readable set (`x IN api_keys`).
"""

from __future__ import annotations

import re
from collections.abc import Collection

# Table → the column holding the project id: the only data a key may read.
PROJECT_TABLES = {
    "llm_inferences": "project_id",
    "llm_inferences_by_minute": "project_id",
    "inference_stats_by_minute": "project_id",
    "inference_stats_by_hour": "project_id",
    "inference_usage_by_day": "project_id",
    "inference_attribution_by_hour": "project_id",
    "feedback": "project_id",
    "ingest_ledger": "project_id",
    "scores": "project_id",
    "otel_traces": "ProjectId",
    "otel_logs": "ProjectId",
}
SAFE_SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "settings",
        "functions",
        "table_functions",
        "formats",
        "data_type_families",
        "time_zones",
        "build_options",
        "aggregate_function_combinators",
        "collations",
        "contributors",
    }
)
SAFE_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "values", "null"}
)
# Functions that reach outside the row data: files, URLs, other servers, dictionaries, join
# tables, models, the process itself. Compared lowercase; prefixes cover families (`dictGet*`).
_DENIED_FUNCTIONS = frozenset(
    {
        "file", "url", "s3", "gcs", "oss", "cos", "hdfs", "remote", "remotesecure", "cluster",
        "clusterallreplicas", "mysql", "postgresql", "mongodb", "redis", "sqlite", "odbc", "jdbc",
        "executable", "input", "merge", "joinget", "joingetornull", "catboostevaluate", "modelevaluate",
        "evalmlmethod", "getsetting", "getsettingordefault", "getmacro", "getserverport", "fqdn",
        "hostname", "uptime", "currentuser", "currentprofiles", "currentroles", "enabledprofiles",
        "displayname", "buildid", "initialqueryid", "queryid", "addresstoline", "addresstolinewithinlines",
        "addresstosymbol", "demangle", "hascolumnintable", "getserversetting", "getclientsetting",
    }
)  # fmt: skip
_DENIED_PREFIXES = (
    "dictget", "dicthas", "dictisin", "filesystem", "s3cluster", "hdfscluster", "urlcluster", "filecluster",
    "azureblob", "iceberg", "deltalake", "hudi",
)  # fmt: skip


def _denied(function: str) -> bool:
    name = function.lower()
    return name in _DENIED_FUNCTIONS or name.startswith(_DENIED_PREFIXES)


_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_NODE = re.compile(r"^( *)(\S+)(?: (\S+))?")
_ALLOWED_ROOTS = frozenset({"SelectWithUnionQuery", "DescribeQuery"})


class SqlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def split_format(query: str) -> tuple[str, str | None]:
    """`SELECT 1 FORMAT JSON` → (`SELECT 1`, `JSON`)."""
    match = _FORMAT_CLAUSE.search(query)
    if match:
        return query[: match.start()], match.group(1)
    return query.rstrip().rstrip(";"), None


def check_single_statement(query: str) -> None:
    """Refuse text after a `;` (outside strings, quoted names and comments) that is more than
    whitespace and comments: the engine would run it as a second, unchecked statement."""
    i, n, ended = 0, len(query), False
    while i < n:
        c = query[i]
        if query.startswith("--", i) or c == "#":
            end = query.find("\n", i)
            i = n if end < 0 else end
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c.isspace():
            i += 1
        elif ended:
            raise SqlError(400, "one statement per request: remove the ';' and what follows it")
        elif c in "'\"`":
            i += 1
            while i < n and query[i] != c:
                i += 2 if query[i] == "\\" else 1
            i += 1
        else:
            ended = c == ";"
            i += 1


def check_ast(ast: str, database: str, tables: Collection[str] = ()) -> None:
    """Raise SqlError(403) unless the AST (`EXPLAIN AST` text) is one SELECT or DESCRIBE that
    names only readable tables and harmless functions. `tables`: the tables the database holds,
    so that a name that is none of them (a `WITH t AS (…)` query's `t`) is left to the engine."""
    lines = [line for line in ast.splitlines() if line.strip()]
    if not lines:
        raise SqlError(400, "empty query")
    root = lines[0].split(" ", 1)[0]
    if root not in _ALLOWED_ROOTS:
        raise SqlError(
            403, f"read-only: only SELECT and DESCRIBE queries run here, not {root.removesuffix('Query')}"
        )
    # A SELECT's root has one child (its ExpressionList), a DESCRIBE's one (its TableExpression);
    # any other is INTO OUTFILE (a file written on the server) or SETTINGS.
    top = [line for line in lines[1:] if _depth(line) == 1]
    if len(top) != 1:
        raise SqlError(403, "INTO OUTFILE and SETTINGS clauses are not allowed here")
    unreadable = (frozenset(tables) - PROJECT_TABLES.keys()) | _INTERNAL_TABLES
    aliases = _aliases(lines)
    previous = ""
    ancestors: list[tuple[int, str, str]] = []  # (depth, kind, name) of the nodes above this line
    for line in lines:
        match = _NODE.match(line)
        if not match:
            continue
        depth, kind, name = len(match.group(1)), match.group(2), match.group(3) or ""
        while ancestors and ancestors[-1][0] >= depth:
            ancestors.pop()
        if kind == "TableIdentifier" or (
            kind == "Identifier" and name not in aliases and _names_a_set(ancestors)
        ):
            _check_table(name, database, unreadable)
        elif kind == "Identifier":
            table = _table_behind(name, aliases, database, unreadable)
            if table:
                raise SqlError(403, f"table {table} is not readable here (named through {name})")
        elif kind == "Function":
            if previous == "TableExpression" and name not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(403, f"table function {name}() is not allowed here")
            if _denied(name):
                raise SqlError(403, f"function {name}() is not allowed here")
        ancestors.append((depth, kind, name))
        previous = kind


# `x IN name`: where an expression names a table, directly or through an alias of the name.
_IN_FUNCTIONS = frozenset(
    {
        "in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn",
        "inIgnoreSet", "notInIgnoreSet", "globalInIgnoreSet", "globalNotInIgnoreSet", "nullInIgnoreSet",
        "notNullInIgnoreSet", "globalNullInIgnoreSet", "globalNotNullInIgnoreSet",
    }
)  # fmt: skip
_ALIAS = re.compile(r"\(alias (\S+?)\)")
_OTHER_DATABASES = frozenset({"system", "information_schema"})


def _aliases(lines: list[str]) -> dict[str, str | None]:
    """Each alias the query defines, with the identifier it names (None: an expression that is
    no bare identifier, such as `count() AS projects`, which the engine resolves before any
    table)."""
    found: dict[str, str | None] = {}
    for line in lines:
        m = _ALIAS.search(line)
        if m:
            node = _NODE.match(line)
            named = node.group(3) if node and node.group(2) == "Identifier" else None
            found[m.group(1)] = named
    return found


def _table_behind(
    name: str, aliases: dict[str, str | None], database: str, unreadable: frozenset[str]
) -> str:
    """The unreadable table an identifier names, itself or through aliases of identifiers
    (`WITH projects AS x, x AS y … IN y`); "" if none. An alias of itself (`projects AS
    projects`) is the table."""
    seen: set[str] = set()
    while name in aliases and name not in seen:
        seen.add(name)
        target = aliases[name]
        if target is None:
            return ""  # an expression: the alias is resolved before any table
        name = target
    db, _, table = name.rpartition(".")
    if db.lower() in _OTHER_DATABASES or (db in ("", database) and table in unreadable):
        return name
    return ""


def _names_a_set(ancestors: list[tuple[int, str, str]]) -> bool:
    """An identifier that is an argument of an IN function (its list of arguments, then it)."""
    return (
        len(ancestors) >= 2
        and ancestors[-1][1] == "ExpressionList"
        and ancestors[-2][1] == "Function"
        and ancestors[-2][2] in _IN_FUNCTIONS
    )


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


_INTERNAL_TABLES = frozenset(
    {
        "api_keys",
        "projects",
        "schema_migrations",
        "kafka_writer_plans",
        "llm_inferences_by_minute_mv",
        "inference_stats_by_minute_mv",
        "inference_stats_by_hour_mv",
        "inference_usage_by_day_mv",
        # Alert rules and webhooks (their secrets) are read through their own API routes only.
        "alert_rules",
        "alert_state",
        "alert_events",
        "webhooks",
        "webhook_deliveries",
        "inference_attribution_by_hour_mv",
    }
)


def _check_table(name: str, database: str, unreadable: frozenset[str]) -> None:
    db, _, table = name.rpartition(".")
    if db in ("", database) and table in PROJECT_TABLES:
        return
    if db == "system" and table in SAFE_SYSTEM_TABLES:
        return
    if not db and table not in unreadable:
        return  # no table of the database: a common table expression's name, or the engine says so
    raise SqlError(403, f"table {name} is not readable here; readable: {', '.join(sorted(PROJECT_TABLES))}")
