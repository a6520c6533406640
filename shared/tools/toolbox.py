"""The five tools of step 5, as LangChain ``@tool`` objects, and the pure helpers behind them.

* ``calculator`` - arithmetic through ``shared.tools.calculator`` (an AST whitelist, never ``eval``);
* ``current_time`` - the date and time now in an IANA time zone;
* ``unit_convert`` - length, mass, temperature, volume and duration;
* ``search_docs`` - the knowledge base of step 3, returning numbered snippets with their source;
* ``sql_query`` - one read-only ``SELECT`` on the shop database (``shared.tools.shopdb``).

Arguments come from a model, so a tool never raises on them: a bad value (an unknown unit, a
write query) comes back as ``"error: ..."`` text, and arguments of the wrong type come back as
a message naming the argument - as a ``ToolMessage`` the model can read and correct.

Note: the descriptions say what each tool is *not* for and hold no example values - small
models pick tools by these words, and copy example values into their arguments.

Example:
    >>> calculator.invoke({"expression": "1234 * 5678"})
    '1234 * 5678 = 7006652'
    >>> unit_convert.invoke({"value": "ten", "from_unit": "km", "to_unit": "mi"})
    'error: invalid arguments (value: Input should be a valid number, unable to parse string as a number); call the tool again with arguments of the right type'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, ToolException, tool
from pydantic import Field, ValidationError

from shared.core.files import DATA_DIR
from shared.tools.calculator import evaluate, format_number
from shared.tools.shopdb import run_query

# A whole chunk at the default chunk size (shared/rag/documents.py): a cut snippet can end just
# before the sentence that answers the question.
SNIPPET_CHARS = 800

# Each unit: (quantity, factor to the base unit). Base units: metre, kilogram, litre, second.
# Temperature is not a factor away from a base, so it has its own formulas below.
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "nmi": ("length", 1852.0),
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237), "st": ("mass", 6.35029318),
    "ml": ("volume", 0.001), "cl": ("volume", 0.01), "dl": ("volume", 0.1), "l": ("volume", 1.0),
    "m3": ("volume", 1000.0), "tsp": ("volume", 0.00492892159375), "tbsp": ("volume", 0.01478676478125),
    "floz": ("volume", 0.0295735295625), "cup": ("volume", 0.2365882365), "pt": ("volume", 0.473176473),
    "qt": ("volume", 0.946352946), "gal": ("volume", 3.785411784),
    "s": ("duration", 1.0), "min": ("duration", 60.0), "h": ("duration", 3600.0), "day": ("duration", 86400.0),
    "week": ("duration", 604800.0),
    "c": ("temperature", 0.0), "f": ("temperature", 0.0), "k": ("temperature", 0.0),
}
_ALIASES = {
    "millimeter": "mm", "centimeter": "cm", "meter": "m", "kilometer": "km", "inch": "in", "inche": "in",
    "foot": "ft", "feet": "ft", "yard": "yd", "mile": "mi", "nauticalmile": "nmi",
    "milligram": "mg", "gram": "g", "kilogram": "kg", "kilo": "kg", "tonne": "t", "ton": "t", "ounce": "oz",
    "pound": "lb", "lbs": "lb", "stone": "st",
    "milliliter": "ml", "centiliter": "cl", "deciliter": "dl", "liter": "l", "cubicmeter": "m3", "m³": "m3",
    "teaspoon": "tsp", "tablespoon": "tbsp", "fluidounce": "floz", "pint": "pt", "quart": "qt", "gallon": "gal",
    "celsius": "c", "centigrade": "c", "fahrenheit": "f", "kelvin": "k",
    "sec": "s", "second": "s", "minute": "min", "hour": "h", "hr": "h", "d": "day", "wk": "week",
}
_ABSOLUTE_ZERO = {"c": -273.15, "f": -459.67, "k": 0.0}


def unit_key(unit: str) -> str:
    """Normalise a unit as people write it (``"Miles"``, ``"°F"``, ``"kilometres"``) to a key.

    Raises:
        ValueError: The unit is unknown; the message lists the known ones.

    Example:
        >>> unit_key("Kilometres"), unit_key("°F"), unit_key("US fl oz")
        ('km', 'f', 'floz')
    """
    text = str(unit).strip().lower().replace("degrees", "").replace("degree", "").replace("°", "")
    text = text.replace("metre", "meter").replace("litre", "liter").replace(" ", "").replace(".", "")
    # Volumes are US measures, so "US gallons" is simply gallons.
    text = text.removeprefix("us") if text not in _UNITS else text
    for candidate in (text, text[:-1] if text.endswith("s") else text, text[:-2] if text.endswith("es") else text):
        if candidate in _UNITS:
            return candidate
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(_UNITS)} (or their names, like kilometers)")


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` between two units of the same quantity.

    Raises:
        ValueError: Unknown unit, units of different quantities, a non-finite value, or a
            temperature below absolute zero.

    Example:
        >>> round(convert(10, "miles", "km"), 4), convert(100, "C", "F")
        (16.0934, 212.0)
    """
    source, target = unit_key(from_unit), unit_key(to_unit)
    (kind, factor), (target_kind, target_factor) = _UNITS[source], _UNITS[target]
    if kind != target_kind:
        raise ValueError(f"cannot convert {kind} ({from_unit}) to {target_kind} ({to_unit})")
    if not math.isfinite(value):
        raise ValueError("the value must be a finite number")
    if kind != "temperature":
        return value * factor / target_factor
    if value < _ABSOLUTE_ZERO[source]:
        raise ValueError(f"{value:g} {from_unit} is below absolute zero")
    celsius = {"c": value, "f": (value - 32) * 5 / 9, "k": value - 273.15}[source]
    return {"c": celsius, "f": celsius * 9 / 5 + 32, "k": celsius + 273.15}[target]


def find_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``; a bare city (``"Seoul"``) finds its ``Area/City`` zone.

    Raises:
        ValueError: No such zone; the message shows how to write one.

    Example:
        >>> find_zone("seoul").key
        'Asia/Seoul'
    """
    text = str(name).strip().replace(" ", "_")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # A bare city, or a city under the wrong area ("Canada/Toronto"): match the city part.
        city = text.rsplit("/", 1)[-1].lower()
        matches = [zone for zone in _zone_names() if zone.lower().endswith("/" + city)]
        if text and matches:
            return ZoneInfo(sorted(matches)[0])
    raise ValueError(f"unknown time zone {name!r}; write an IANA name as Area/City, like Asia/Seoul or Europe/Berlin, or UTC")


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def describe_time(zone: str, now: datetime | None = None) -> str:
    """The date, time and weekday in ``zone``, with its UTC offset.

    Example:
        >>> describe_time("Asia/Seoul", datetime(2026, 11, 28, 0, 30, tzinfo=ZoneInfo("UTC")))
        'Saturday 2026-11-28 09:30:00 KST (Asia/Seoul, UTC+09:00)'
    """
    info = find_zone(zone)
    local = (now or datetime.now(info)).astimezone(info)
    offset = local.strftime("%z")
    return f"{local:%A %Y-%m-%d %H:%M:%S} {local.tzname()} ({info.key}, UTC{offset[:3]}:{offset[3:]})"


def _explain_arguments(error: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
    return f"error: invalid arguments ({problems}); call the tool again with arguments of the right type"


def _guarded(made: BaseTool) -> BaseTool:
    """Return bad values and wrong argument types to the model as ``error: ...`` text."""
    made.handle_tool_error = lambda exc: f"error: {exc}"
    made.handle_validation_error = _explain_arguments
    return made


def _checked(compute: Callable[[], str]) -> str:
    try:
        return compute()
    except ValueError as exc:
        raise ToolException(str(exc)) from None


@tool(parse_docstring=True)
def calculator(expression: Annotated[str, Field(max_length=200)]) -> str:
    """Compute an arithmetic expression exactly: numbers with + - * / // % ** and parentheses, and sqrt, round, abs, min, max, log, exp, sin, cos, tan, pi. Use it whenever the answer needs a calculation on numbers given in the question. Not for converting units, not for dates or times, and not for looking anything up.

    Args:
        expression: The arithmetic expression, written with Python operators and plain numbers.
    """
    return _checked(lambda: f"{expression.strip()} = {format_number(evaluate(expression))}")


def make_current_time(clock: Callable[[], datetime] | None = None) -> BaseTool:
    """Build the ``current_time`` tool.

    Args:
        clock: Returns the moment to report, timezone-aware (``None``: the real clock). An
            evaluation freezes it, so answers about the time can be checked.

    Returns:
        The tool.
    """

    @tool(parse_docstring=True)
    def current_time(timezone: Annotated[str, Field(max_length=40)] = "UTC") -> str:
        """The current date, time and weekday in a time zone. Use it when the question asks what time or date it is now, somewhere. Not for converting units, not for calculations, and not for opening hours (search_docs has those).

        Args:
            timezone: An IANA time zone name written as Area/City, or UTC.
        """
        return _checked(lambda: describe_time(timezone, clock() if clock else None))

    return _guarded(current_time)


current_time = make_current_time()


@tool(parse_docstring=True)
def unit_convert(
    value: float, from_unit: Annotated[str, Field(max_length=20)], to_unit: Annotated[str, Field(max_length=20)]
) -> str:
    """Convert a quantity between units of length, mass, temperature, volume (metric, US and imperial) or duration (seconds to weeks). Use it when the question gives a value in one unit and asks for another unit. Not for currencies or prices, and not for arithmetic without units.

    Args:
        value: The number to convert.
        from_unit: The unit the value is in.
        to_unit: The unit wanted.
    """
    return _checked(lambda: f"{value:g} {from_unit} = {format_number(convert(value, from_unit, to_unit))} {to_unit}")


@tool(parse_docstring=True)
def sql_query(query: Annotated[str, Field(max_length=400)]) -> str:
    """Run one read-only SQL SELECT on the Maru shop database and return the rows. Tables: products(id, model, name, category, price_won, stock) - model is the product's code, name its name, customers(id, name, city, country, joined_on), orders(id, customer_id, product_id, quantity, total_won, status, ordered_on) - customer_id and product_id are the ids in customers and products. Use it for current prices, stock levels, orders and customers. Not for product weights or specifications, how-to, warranty, shipping or return rules (search_docs has those), and not for general knowledge.

    Args:
        query: One SQLite SELECT statement on the tables above.
    """
    return _checked(lambda: run_query(query).as_text())


def format_snippets(documents: list[Any]) -> str:
    """Number retrieved chunks as ``[1] source (page N): text`` for a model to cite.

    Example:
        >>> from langchain_core.documents import Document
        >>> format_snippets([Document("Two years.", metadata={"source": "warranty.md"})])
        '[1] warranty.md: Two years.'
    """
    if not documents:
        return "no passages matched; try other words, or answer that the documents do not say"
    lines = []
    for number, doc in enumerate(documents, start=1):
        page = doc.metadata.get("page")
        where = doc.metadata.get("source", "?") + (f" (page {page})" if page else "")
        text = " ".join(doc.page_content.split())
        lines.append(f"[{number}] {where}: {text[:SNIPPET_CHARS]}{'...' if len(text) > SNIPPET_CHARS else ''}")
    return "\n".join(lines)


def make_search_docs(retriever: Runnable | None = None, embeddings: str | None = None) -> BaseTool:
    """Build the ``search_docs`` tool over a retriever.

    Args:
        retriever: Any runnable from a query to a list of ``Document``; ``None`` opens the
            project's knowledge base (``data/``, as step 3 does) on the first search, so
            binding the tool costs nothing.
        embeddings: The embeddings spec of that knowledge base (``None``: the default).

    Returns:
        The tool.
    """

    @cache
    def opened() -> Runnable:
        from shared.rag.knowledge_base import open_retriever

        return retriever if retriever is not None else open_retriever(DATA_DIR, embeddings)

    @tool(parse_docstring=True)
    def search_docs(query: Annotated[str, Field(max_length=200)]) -> str:
        """Search Maru's documents - product manuals, the price list with specifications and weights, warranty, returns, shipping and store policies, FAQ, store hours and address, company notes - and return numbered passages with their source. Use it for how-to, troubleshooting, policy and product-feature questions about Maru, and whenever the question names a manual, the price list or a policy. Not for stock levels, orders or customers (sql_query has those), and not for general knowledge.

        Args:
            query: What to look for, in a few words.
        """
        if not query.strip():
            raise ToolException("the query is empty; say what to look for")
        return format_snippets(opened().invoke(query))

    return _guarded(search_docs)


for _made in (calculator, unit_convert, sql_query):
    _guarded(_made)

TOOL_NAMES = ("calculator", "current_time", "unit_convert", "search_docs", "sql_query")

# The system prompt of a round of tool calling (step 5, and ``roadmap eval tools``).
TOOL_SYSTEM = (
    "You are the assistant of Maru, a small Korean shop for home electronics. "
    "Use a tool when the question needs a calculation, the time, a unit conversion, Maru's documents "
    "or the shop database; otherwise answer directly. When tool results are given, answer from them "
    "in one or two sentences, in the language of the question."
)

# Few-shot decisions for small local models (``bind_tools(tools, tool_examples=TOOL_EXAMPLES)``):
# one per tool and two that need none, so no choice is favoured; then second rounds for an
# agent (``result`` and ``next``): four that chain a second tool, three that stop and answer.
# Note: the products, customers, cities, documents and numbers are made up - none is in the
# evaluation sets (data/eval/) or the shop database - because a small model copies what its
# examples show into its answers; tests/shared/tools/test_examples_leakage.py checks it.
TOOL_EXAMPLES: list[dict[str, Any]] = [
    {"question": "What's 43 percent of 1,630?", "action": "calculator", "args": {"expression": "1630 * 0.43"}},
    {"question": "Give me three tips for packing a fragile vase.", "action": "answer"},
    {"question": "What's the local time in Reykjavik?", "action": "current_time",
     "args": {"timezone": "Atlantic/Reykjavik"}},
    {"question": "How many teaspoons is 415 ml?", "action": "unit_convert",
     "args": {"value": 415, "from_unit": "ml", "to_unit": "tsp"}},
    {"question": "Can I still send back a Tidal humidifier I have used once?", "action": "search_docs",
     "args": {"query": "return policy used product"}},
    {"question": "Did Novak Petra ever order from us?", "action": "sql_query",
     "args": {"query": "SELECT count(*) FROM orders JOIN customers ON customers.id = orders.customer_id "
              "WHERE customers.name = 'Novak Petra'"}},
    {"question": "How many legs does a spider have?", "action": "answer"},
    {"question": "Who discovered penicillin?", "action": "answer"},
    {"question": "What do 16 Kestrel blenders come to at today's shop price?", "action": "sql_query",
     "args": {"query": "SELECT price_won FROM products WHERE name LIKE '%Kestrel blender%'"},
     "result": "price_won\n47500\n(1 row)", "next": {"action": "calculator", "args": {"expression": "47500 * 16"}}},
    {"question": "How long is the Nimbus air purifier's power cord in feet, per its manual?",
     "action": "search_docs", "args": {"query": "Nimbus air purifier power cord length"},
     "result": "[1] manuals/nimbus-purifier.md: The Nimbus air purifier has a 2.75 m power cord "
               "and a washable pre-filter.",
     "next": {"action": "unit_convert", "args": {"value": 2.75, "from_unit": "m", "to_unit": "ft"}}},
    {"question": "What would the home-setup service charge for 29 devices?",
     "action": "search_docs", "args": {"query": "home setup service price per device"},
     "result": "[1] policies/home-setup.md: Home setup costs 16,500 won per device and is booked by phone.",
     "next": {"action": "calculator", "args": {"expression": "16500 * 29"}}},
    {"question": "Is it a good hour to phone Ortega Lucia, one of our customers?", "action": "sql_query",
     "args": {"query": "SELECT city, country FROM customers WHERE name = 'Ortega Lucia'"},
     "result": "city | country\nLima | PE\n(1 row)",
     "next": {"action": "current_time", "args": {"timezone": "America/Lima"}}},
    {"question": "Are any Lumo night lights left?", "action": "sql_query",
     "args": {"query": "SELECT stock FROM products WHERE name LIKE '%Lumo night light%'"},
     "result": "stock\n0\n(1 row)", "next": {"action": "answer"}},
    {"question": "How many yards is 460 metres?", "action": "unit_convert",
     "args": {"value": 460, "from_unit": "m", "to_unit": "yd"},
     "result": "460 m = 503.062117235 yd", "next": {"action": "answer"}},
    {"question": "Does the Orbit rice cooker keep rice warm overnight?", "action": "search_docs",
     "args": {"query": "Orbit rice cooker keep warm"},
     "result": "[1] manuals/orbit-rice-cooker.md: Keep-warm starts by itself after cooking and runs "
               "until you switch the cooker off.",
     "next": {"action": "answer"}},
]


def build_tools(
    retriever: Runnable | None = None,
    clock: Callable[[], datetime] | None = None,
    embeddings: str | None = None,
) -> list[BaseTool]:
    """The five tools, in ``TOOL_NAMES`` order.

    Args:
        retriever: The retriever for ``search_docs`` (``None``: the project's knowledge base,
            opened on the first search).
        clock: The clock of ``current_time`` (``None``: the real one).
        embeddings: The embeddings spec of that knowledge base (``None``: the default).

    Returns:
        ``[calculator, current_time, unit_convert, search_docs, sql_query]``.
    """
    time_tool = make_current_time(clock) if clock else current_time
    return [calculator, time_tool, unit_convert, make_search_docs(retriever, embeddings), sql_query]
