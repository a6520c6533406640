"""The five tools, their helpers, the shop database and one round of tool calling (unit)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from langchain_core.documents import Document
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableLambda

from shared.tools.calculator import CalculatorError, evaluate, format_number
from shared.tools.shopdb import (
    MAX_COLUMNS,
    MAX_RESULT_CHARS,
    MAX_STRING_BYTES,
    SHOP_DB,
    SHOP_SQL,
    TIMEOUT_S,
    QueryError,
    build_shop_db,
    dump,
    run_query,
)
from shared.tools.toolbox import (
    SNIPPET_CHARS,
    TOOL_NAMES,
    build_tools,
    calculator,
    convert,
    current_time,
    describe_time,
    make_current_time,
    make_search_docs,
    sql_query,
    unit_convert,
    unit_key,
)


def call(tool, args, call_id="c1"):
    """Invoke a tool the way a model's tool call does; return the ToolMessage."""
    return tool.invoke({"name": tool.name, "args": args, "id": call_id, "type": "tool_call"})


# ---- calculator ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expression, value",
    [("1234 * 5678", 7006652), ("(45 + 37) * 12 - 100", 884), ("2 ** 20", 1048576), ("sqrt(1764)", 42.0),
     ("7 // 2 + 7 % 2", 4), ("-3 + +5", 2), ("round(2 / 3, 3)", 0.667), ("max(3, 9, 4)", 9)],
)
def test_calculator_evaluates_arithmetic(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression, reason",
    [("__import__('os')", "only these functions"), ("(1).real", "Attribute is not allowed"),
     ("x + 1", "unknown name 'x'"), ("2 ^ 10", "write ** for powers"), ("89,000 * 2", "thousands separators"),
     ("1 / 0", "division by zero"), ("9 ** 9 ** 9", "exponents are limited"), ("10 ** 400", "more than 300 digits"),
     ("", "empty"), ("1 +", "not an arithmetic expression"), ("'a' * 3", "Constant is not allowed"),
     ("sqrt(-1)", "math error"), ("(-8) ** 0.5", "no real result"), ("1e308 * 10", "too large"),
     ("True + 1", "Constant is not allowed"), ("round(1.5, 10 ** 9)", "at most 300 digits")],
)
def test_calculator_rejects_with_a_clear_reason(expression, reason):
    with pytest.raises(CalculatorError, match=reason.replace("(", r"\(").replace("*", r"\*")):
        evaluate(expression)


def test_calculator_tool_reports_result_or_error_and_never_raises():
    assert calculator.invoke({"expression": "1234 * 5678"}) == "1234 * 5678 = 7006652"
    assert format_number(0.1 + 0.2) == "0.3"
    failed = call(calculator, {"expression": "open('x')"})
    assert failed.status == "error" and failed.content.startswith("error: only these functions")


@pytest.mark.parametrize(
    "tool, args, named",
    [(calculator, {"expression": 1234}, "expression"),
     (unit_convert, {"value": "ten", "from_unit": "km", "to_unit": "mi"}, "value"),
     (unit_convert, {"value": 1.0, "from_unit": "km"}, "to_unit"), (sql_query, {"query": ["SELECT 1"]}, "query"),
     (current_time, {"timezone": {"city": "Seoul"}}, "timezone"),
     (calculator, {"expression": "1+" * 150}, "expression")],
)
def test_wrong_argument_types_come_back_to_the_model_as_an_error_message(tool, args, named):
    message = call(tool, args)
    assert isinstance(message, ToolMessage) and message.status == "error" and message.tool_call_id == "c1"
    assert message.content.startswith("error: invalid arguments (") and named in message.content
    assert "call the tool again" in message.content


# ---- current_time and unit_convert ---------------------------------------------------------

def test_describe_time_in_a_zone_and_by_bare_city():
    noon_utc = datetime(2026, 11, 28, 3, 0, tzinfo=ZoneInfo("UTC"))
    assert describe_time("Asia/Seoul", noon_utc) == "Saturday 2026-11-28 12:00:00 KST (Asia/Seoul, UTC+09:00)"
    assert "(America/New_York, UTC-05:00)" in describe_time("new york", noon_utc)
    assert current_time.invoke({}).endswith("(UTC, UTC+00:00)")
    # A model's guess of the area can be wrong; the city still finds its zone.
    assert "(America/Toronto, UTC-05:00)" in describe_time("Canada/Toronto", noon_utc)


def test_current_time_reads_an_injected_clock():
    frozen = make_current_time(lambda: datetime(2026, 11, 28, 9, 30, tzinfo=ZoneInfo("UTC")))
    assert frozen.invoke({"timezone": "Asia/Tokyo"}) == "Saturday 2026-11-28 18:30:00 JST (Asia/Tokyo, UTC+09:00)"


def test_unknown_time_zone_explains_how_to_write_one():
    message = call(current_time, {"timezone": "Mars/Olympus"})
    assert message.status == "error" and "Asia/Seoul" in message.content and "Area/City" in message.content


@pytest.mark.parametrize(
    "value, source, target, expected",
    [(26.2, "miles", "km", 42.1648), (180, "lbs", "kilograms", 81.6466), (350, "°F", "celsius", 176.6667),
     (5, "gallons", "litres", 18.9271), (6, "feet", "cm", 182.88), (250, "g", "oz", 8.8185), (0, "K", "C", -273.15),
     (2, "cups", "ml", 473.1765), (5, "US gallons", "l", 18.9271), (14, "hours", "minutes", 840.0),
     (90, "min", "h", 1.5), (2, "weeks", "days", 14.0), (3, "hrs", "seconds", 10800.0)],
)
def test_unit_conversions(value, source, target, expected):
    assert round(convert(value, source, target), 4) == expected


def test_unit_convert_tool_and_its_errors():
    assert unit_convert.invoke({"value": 10, "from_unit": "miles", "to_unit": "km"}) == "10 miles = 16.09344 km"
    def convert(value, from_unit, to_unit):
        return call(unit_convert, {"value": value, "from_unit": from_unit, "to_unit": to_unit}).content

    assert "cannot convert mass (kg) to length (km)" in convert(1, "kg", "km")
    assert "unknown unit 'parsec'" in convert(1, "parsec", "km")
    assert "cannot convert duration (h) to length (m)" in convert(1, "h", "m")
    assert "below absolute zero" in convert(-500, "C", "F")
    assert unit_key("fl oz") == "floz" and unit_key("Kilometres") == "km"


# ---- sql_query and the shop database ------------------------------------------------------

def test_shipped_database_matches_its_sql_source(tmp_path):
    assert dump(SHOP_DB) == dump(build_shop_db(SHOP_SQL, tmp_path / "shop.db"))


def test_sql_query_reads_rows_as_a_table():
    text = sql_query.invoke({"query": "SELECT model, stock FROM products WHERE stock = 0;"})
    assert text == "model | stock\nML-8 | 0\n(1 row)"
    assert run_query("SELECT name FROM customers WHERE name LIKE '%;%'").rows == []


@pytest.mark.parametrize(
    "query, reason",
    [("DELETE FROM orders", "not DELETE"), ("UPDATE products SET stock = 0", "not UPDATE"),
     ("DROP TABLE products", "not DROP"), ("SELECT 1; DROP TABLE products", "only one statement"),
     ("ATTACH DATABASE 'x.db' AS x", "not ATTACH"), ("PRAGMA writable_schema = 1", "not PRAGMA"),
     ("WITH x AS (SELECT 1) DELETE FROM orders", "only reading tables is allowed"),
     ("SELECT * FROM refunds", "no such table: refunds"), ("", "empty"), ("SELECT 1 \x00", "NUL character")],
)
def test_sql_that_writes_or_is_invalid_is_refused_and_the_file_is_untouched(query, reason):
    before = hashlib.sha256(SHOP_DB.read_bytes()).hexdigest()
    message = call(sql_query, {"query": query})
    assert message.status == "error" and reason in message.content
    assert hashlib.sha256(SHOP_DB.read_bytes()).hexdigest() == before


def test_sql_row_and_time_limits(tmp_path):
    counting = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 500) SELECT x FROM n"
    result = run_query(counting, max_rows=50)
    assert len(result.rows) == 50 and result.truncated and "more rows were left out" in result.as_text()
    with pytest.raises(QueryError, match="ran longer than 0.2 s"):
        run_query("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
                  timeout_s=0.2)
    with pytest.raises(QueryError, match="is missing"):
        run_query("SELECT 1", db=tmp_path / "gone.db")


A_LOT = "(WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT {}) SELECT group_concat('a', '') FROM n)"


@pytest.mark.parametrize(
    "query, reason",
    [
        # One builtin call is never interrupted by the progress handler: this one looped for 10-20 s.
        ("SELECT length(printf('%.*c', 2000000000, 'x'))", "widths and precisions must be written as numbers"),
        ("SELECT length(format('%.2000000000c', 'x'))", "widths and precisions must be written as numbers"),
        ("SELECT printf('%*d', 2000000000, 1)", "widths and precisions must be written as numbers"),
        ("SELECT fts3_tokenizer('simple')", "fts3_tokenizer() is not available"),  # answered a heap address
        ("SELECT length(zeroblob(1000000000))", "zeroblob() is not available"),
        ("SELECT length(randomblob(1000000000))", "randomblob() is not available"),
        ("SELECT hex(randomblob(400000))", "hex() is not available"),
        ("SELECT load_extension('x')", "load_extension() is not available"),
        ("SELECT sqlite_version()", "sqlite_version() is not available"),
        (f"SELECT length({A_LOT.format(MAX_STRING_BYTES + 1)})", f"longer than {MAX_STRING_BYTES:,} bytes"),
        ("SELECT " + ", ".join(["1"] * (MAX_COLUMNS + 1)), f"more than {MAX_COLUMNS} columns"),
        (f"WITH s(v) AS {A_LOT.format(MAX_STRING_BYTES // 2)} SELECT {', '.join(['v'] * 12)} FROM s, products",
         f"larger than {MAX_RESULT_CHARS:,} characters"),
    ],
)
def test_sql_bombs_are_refused_within_the_time_limit(query, reason):
    started = time.monotonic()
    message = call(sql_query, {"query": query})
    assert message.status == "error" and reason in message.content, message.content
    assert time.monotonic() - started < TIMEOUT_S


def test_sql_functions_the_lesson_needs_still_work():
    query = ("SELECT count(*), printf('%.1f', avg(stock)), format('%5d|%-3s|%%', 42, 'ab'), "
             "upper(substr(name, 1, 3)), round(sqrt(16)), strftime('%Y', '2026-11-18'), coalesce(NULL, 'x') "
             "FROM products WHERE name LIKE 'Aurora%'")
    assert run_query(query).rows == [(2, "81.0", "   42|ab |%", "AUR", 4.0, "2026", "x")]


# ---- search_docs --------------------------------------------------------------------------

def test_search_docs_returns_numbered_cited_snippets():
    found = [Document("The Glow lamp has a 36-month warranty.", metadata={"source": "lamp.md"}),
             Document("Price list " + "x" * (SNIPPET_CHARS + 100), metadata={"source": "prices.pdf", "page": 2})]
    queries = []
    search = make_search_docs(RunnableLambda(lambda q: queries.append(q) or found))
    text = search.invoke({"query": "lamp warranty"})
    assert queries == ["lamp warranty"]
    assert text.startswith("[1] lamp.md: The Glow lamp has a 36-month warranty.\n[2] prices.pdf (page 2): Price list")
    assert text.endswith("...")
    assert "no passages matched" in make_search_docs(RunnableLambda(lambda q: [])).invoke({"query": "robots"})
    assert call(search, {"query": "  "}).status == "error"


def test_build_tools_names_and_descriptions_say_what_not_to_use_them_for():
    tools = build_tools(RunnableLambda(lambda q: []))
    assert [t.name for t in tools] == list(TOOL_NAMES)
    for tool in tools:
        assert "Not for" in tool.description and "Args:" not in tool.description
