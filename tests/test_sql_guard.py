"""The SQL guard on its own: what may run through the read-only endpoint."""

from __future__ import annotations

import pytest

from inferline.api.sql_guard import SqlError, check_single_statement, split_format

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
