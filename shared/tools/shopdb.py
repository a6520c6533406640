"""Read-only SQL on the Maru shop's sample database (``data/shop.db``, built from ``data/shop.sql``).

Why ship both files: the ``.sql`` text is what a reviewer reads and diffs, the ``.db`` file is
what the tool opens - read-only, so it is never rebuilt or touched at run time. A test rebuilds
the database from the SQL and checks that both hold the same schema and rows.

A query from a model is untrusted text, so ``run_query`` guards it six ways: the file is opened
read-only (``mode=ro``) with ``PRAGMA query_only``; an authorizer allows only reading (no
writes, ``ATTACH``, ``PRAGMA`` or schema changes, even inside a ``WITH``) and only the SQL
functions in ``ALLOWED_FUNCTIONS`` (aggregates, string, date and math functions: no
``zeroblob``, ``randomblob``, ``load_extension`` or ``fts3_tokenizer``); only one ``SELECT``
or ``WITH`` statement is accepted; strings, columns and the result are capped
(``MAX_STRING_BYTES``, ``MAX_COLUMNS``, ``MAX_RESULT_CHARS``) and at most ``max_rows`` rows
come back; and a progress handler stops any query that runs longer than ``timeout_s``.

Note: the progress handler runs between SQLite's steps, never inside one function call. What
one call does is bounded instead: strings by the length limit, ``printf``/``format`` by
refusing widths and precisions over ``MAX_FORMAT_WIDTH`` (``printf('%.*c', 2000000000, 'x')``
would otherwise loop for many seconds).

Example:
    >>> run_query("SELECT model, stock FROM products WHERE name LIKE '%kettle%'").rows
    [('KT-17', 23)]
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.core.files import DATA_DIR

SHOP_SQL = DATA_DIR / "shop.sql"
SHOP_DB = DATA_DIR / "shop.db"
MAX_ROWS = 50
TIMEOUT_S = 2.0
MAX_QUERY_LENGTH = 2000
MAX_VALUE_LENGTH = 200
MAX_STRING_BYTES = 10_000  # longest string or blob a query may build (SQLITE_LIMIT_LENGTH)
MAX_COLUMNS = 50
MAX_RESULT_CHARS = 100_000  # text in all the returned cells together
MAX_FORMAT_WIDTH = 100  # widest width or precision in printf/format
ALLOWED_FUNCTIONS = frozenset({
    # aggregates and window functions
    "avg", "count", "group_concat", "max", "min", "sum", "total", "row_number", "rank", "dense_rank",
    "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    # values and strings (LIKE and GLOB call like() and glob())
    "abs", "coalesce", "ifnull", "iif", "nullif", "typeof", "round", "length", "lower", "upper", "trim", "ltrim",
    "rtrim", "substr", "substring", "replace", "instr", "like", "glob", "char", "unicode", "printf", "format",
    # dates
    "date", "time", "datetime", "julianday", "strftime", "unixepoch", "current_date", "current_time",
    "current_timestamp",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees", "exp",
    "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sign", "sin", "sinh", "sqrt",
    "tan", "tanh", "trunc",
})
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
# What SQLite's printf reads between a '%' and the conversion letter: flags, width, precision, 'l'.
_FORMAT_SPEC = re.compile(r"%([-+ #!0,0-9.*l]*)")


class QueryError(ValueError):
    """The query is not one read-only statement, is invalid, or ran too long."""


@dataclass
class QueryResult:
    """Column names, rows (at most ``max_rows``), and whether more rows were left out."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool

    def as_text(self) -> str:
        """The result as a small pipe-separated table a model can read.

        Example:
            >>> QueryResult(["model", "stock"], [("KT-17", 23)], False).as_text()
            'model | stock\\nKT-17 | 23\\n(1 row)'
        """

        def cell(value: Any) -> str:
            text = "NULL" if value is None else str(value)
            return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "..."

        lines = [" | ".join(self.columns)] + [" | ".join(cell(v) for v in row) for row in self.rows]
        count = f"{len(self.rows)} row{'' if len(self.rows) == 1 else 's'}"
        if self.truncated:
            lines.append(f"({count}; more rows were left out, add a LIMIT or a narrower WHERE)")
        elif not self.rows:
            # Note: "0 rows" is most often a mistyped name, not an answer; say so, or a small
            # model reports "it costs 0 won".
            lines.append(f"({count}: nothing matched; check the names, or match text with LIKE '%word%')")
        else:
            lines.append(f"({count})")
        return "\n".join(lines)


def build_shop_db(sql: Path, db: Path) -> Path:
    """Create the SQLite database ``db`` from the SQL script ``sql`` (replacing ``db``).

    Args:
        sql: The schema and rows as SQL text (``data/shop.sql``).
        db: Where to write the database.

    Returns:
        ``db``.
    """
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as connection:
        connection.executescript(sql.read_text(encoding="utf-8"))
    connection.close()
    return db


def dump(db: Path) -> list[str]:
    """The schema and rows of ``db`` as SQL lines (to compare two databases).

    Raises:
        QueryError: The file is missing or is not a database.
    """
    try:
        connection = _open_read_only(db)
        try:
            return list(connection.iterdump())
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise QueryError(f"cannot read {db.name}: {exc}") from None


def _open_read_only(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise QueryError(f"the database {db.name} is missing; restore it with: git checkout data/{db.name}")
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    connection.execute("PRAGMA query_only = ON")
    return connection


class _Guard:
    """The authorizer and the bounded ``printf`` of one query, and what they refused."""

    def __init__(self) -> None:
        self.refused: str | None = None
        self._formatter = sqlite3.connect(":memory:")

    def authorize(self, action: int, first: str | None, second: str | None, *context: Any) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            # For a function call SQLite passes its name second.
            if (second or "").lower() in ALLOWED_FUNCTIONS:
                return sqlite3.SQLITE_OK
            self.refused = self.refused or (f"the SQL function {second}() is not available; use aggregates "
                                            "(count, sum, avg, min, max), string, date and math functions")
        return sqlite3.SQLITE_DENY

    def printf(self, *args: Any) -> Any:
        """SQLite's own ``printf``, refused when a width or precision is over ``MAX_FORMAT_WIDTH``."""
        if args and isinstance(args[0], (str, bytes)):
            text = args[0] if isinstance(args[0], str) else args[0].decode("utf-8", "replace")
            for spec in _FORMAT_SPEC.findall(text):
                # Checking every '%' (even the second of "%%") can only refuse more, never less.
                if "*" in spec or any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)):
                    self.refused = (f"printf/format widths and precisions must be written as numbers up to "
                                    f"{MAX_FORMAT_WIDTH}, e.g. printf('%.2f', x)")
                    raise ValueError(self.refused)
        placeholders = ", ".join("?" * len(args))
        return self._formatter.execute(f"SELECT printf({placeholders})", args).fetchone()[0]

    def close(self) -> None:
        self._formatter.close()


def check_query(query: str) -> str:
    """Return the query without a trailing ``;`` if it is one ``SELECT``/``WITH`` statement.

    Raises:
        QueryError: Empty, too long, a NUL character, several statements, or not a
            ``SELECT``/``WITH``.
    """
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the query is empty; write one SELECT statement")
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters; write a shorter SELECT")
    if "\x00" in query:
        raise QueryError("the query contains a NUL character; write plain SQL text")
    text = query.strip().rstrip(";").strip()
    if ";" in text and not _single_statement(text):
        raise QueryError("only one statement is allowed; remove the ';' and everything after it")
    first = _FIRST_WORD.match(text)
    if not first or first.group(1).upper() not in ("SELECT", "WITH"):
        word = first.group(1).upper() if first else text[:10]
        raise QueryError(f"only read-only SELECT queries are allowed, not {word}; the database cannot be changed")
    return text


def _single_statement(text: str) -> bool:
    # A ';' inside a string literal ('a;b') is fine; sqlite3 knows where statements end.
    return sqlite3.complete_statement(text + ";") and not any(
        sqlite3.complete_statement(text[: i + 1]) for i, ch in enumerate(text) if ch == ";"
    )


def run_query(query: str, db: Path = SHOP_DB, max_rows: int = MAX_ROWS, timeout_s: float = TIMEOUT_S) -> QueryResult:
    """Run one read-only query on ``db`` with row and time limits.

    Args:
        query: One ``SELECT`` (or ``WITH ... SELECT``) statement; a trailing ``;`` is allowed.
        db: The SQLite file, opened read-only.
        max_rows: Rows to return at most; ``truncated`` says whether there were more.
        timeout_s: Wall-clock limit for the query.

    Returns:
        The columns and rows.

    Raises:
        QueryError: The query writes, is not one statement, is invalid SQL, or runs too long;
            the message says what to change.
    """
    text = check_query(query)
    connection = _open_read_only(db)
    guard = _Guard()
    deadline = time.monotonic() + timeout_s
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_STRING_BYTES)
    connection.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_QUERY_LENGTH)
    connection.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
    for name in ("printf", "format"):
        connection.create_function(name, -1, guard.printf, deterministic=True)
    connection.set_authorizer(guard.authorize)
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    try:
        cursor = connection.execute(text)
        rows = _fetch(cursor, max_rows + 1)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.DatabaseError as exc:
        raise QueryError(guard.refused or _explain(exc, timeout_s)) from None
    except (sqlite3.Warning, sqlite3.ProgrammingError, OverflowError, MemoryError) as exc:
        raise QueryError(f"the query failed: {exc}") from None
    finally:
        connection.close()
        guard.close()
    return QueryResult(columns, rows[:max_rows], len(rows) > max_rows)


def _fetch(cursor: sqlite3.Cursor, count: int) -> list[tuple[Any, ...]]:
    """Up to ``count`` rows, refused once their cells hold more than ``MAX_RESULT_CHARS``."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    for row in iter(cursor.fetchone, None):
        size += sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in row)
        if size > MAX_RESULT_CHARS:
            raise QueryError(f"the result is larger than {MAX_RESULT_CHARS:,} characters; "
                             "select fewer columns, shorter values or fewer rows")
        rows.append(row)
        if len(rows) == count:
            break
    return rows


def _explain(exc: sqlite3.DatabaseError, timeout_s: float) -> str:
    message = str(exc)
    if "too big" in message:
        return f"the query builds a value longer than {MAX_STRING_BYTES:,} bytes; select shorter values"
    if "too many columns" in message:
        return f"the query selects more than {MAX_COLUMNS} columns; name the columns you need"
    if "interrupted" in message:
        return f"the query ran longer than {timeout_s:g} s and was stopped; simplify it or add a LIMIT"
    if "not authorized" in message or "readonly" in message or "read-only" in message:
        return "the query tried to change or inspect the database itself; only reading tables is allowed"
    return f"invalid SQL: {message}; check the table and column names"
