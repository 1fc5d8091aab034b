"""The SQL guard on its own: what may run through the read-only endpoint."""

from __future__ import annotations

import pytest

from inferline.api.sql_guard import SqlError, check_ast, check_single_statement, split_format

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; SELECT * FROM api_keys",
        "SELECT 1;SELECT 2",
        "SELECT ';' AS a; DROP TABLE x",
        "SELECT 1 /* ; */ ; SELECT 2",
    ],
)
def test_a_second_statement_is_refused(query: str) -> None:
    with pytest.raises(SqlError, match="one statement"):
        check_single_statement(query)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT ';'",
        "SELECT 1;",
        "SELECT 1; -- trailing comment",
        "SELECT `a;b` FROM t",
        "SELECT 'it\\'s; fine'",
        "SELECT 1 -- ; SELECT 2",
        'SELECT "x;y" FROM t',
    ],
)
def test_semicolons_in_strings_comments_and_names_are_fine(query: str) -> None:
    check_single_statement(query)


def test_format_clause_is_split_off() -> None:
    assert split_format("SELECT 1 FORMAT JSONEachRow") == ("SELECT 1", "JSONEachRow")
    assert split_format("SELECT 1;") == ("SELECT 1", None)


def _ast(query: str) -> str:
    """The engine's own syntax tree of `query`, as the endpoint reads it."""
    import chdb

    return str(chdb.query(f"EXPLAIN AST {query}", "TabSeparatedRaw").bytes().decode())


TABLES = frozenset({"llm_inferences", "otel_traces", "api_keys", "projects", "flush_plans"})


@pytest.mark.integration
@pytest.mark.parametrize(
    "query",
    [
        "WITH t AS (SELECT model FROM llm_inferences) SELECT count() FROM t",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t WHERE x IN t",
        "SELECT count() AS projects FROM llm_inferences ORDER BY projects",
        "SELECT model AS api_keys FROM llm_inferences WHERE api_keys != ''",
        "WITH 1 AS projects SELECT 'p2' IN projects",  # the alias, before any table (checked)
        "SELECT 1 AS projects, projects AS y, 'p2' IN y",
        "SELECT trace_id FROM llm_inferences WHERE span_id IN (SELECT SpanId FROM otel_traces)",
    ],
)
def test_common_table_expressions_and_aliases_named_like_tables_are_no_tables(query: str) -> None:
    check_ast(_ast(query), "default", TABLES)


@pytest.mark.integration
@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 WHERE 'x' IN flush_plans",  # a table of the database on no list: refused all the same
        "SELECT * FROM flush_plans",
        "SELECT 1 WHERE 'x' NOT IN api_keys",
        "SELECT 1 WHERE 'x' GLOBAL IN projects",
        "WITH api_keys AS (SELECT 1) SELECT * FROM api_keys",  # a name that is a table's is refused
        # An alias of a table's name reads the table in IN (review: membership tests on projects).
        "WITH projects AS x SELECT 'p2' IN x",
        "WITH api_keys AS x, x AS y SELECT ('h', 'p2') GLOBAL IN y",
        "WITH projects AS projects, projects AS x SELECT 'p2' IN x",
        "SELECT 1 WHERE 'x' IN system.tables",
        "SELECT inIgnoreSet('p2', projects)",
        "SELECT 1 AS a WHERE 'x' IN information_schema.tables",
        "SELECT 1 WHERE 'x' IN default.t",
    ],
)
def test_tables_on_no_list_are_refused(query: str) -> None:
    with pytest.raises(SqlError, match="not readable"):
        check_ast(_ast(query), "default", TABLES)
