"""The few-shot ``TOOL_EXAMPLES`` and the fine-tuning ``data/finetune/tool_questions.jsonl`` leak
nothing of the evaluation sets or the shop database (unit).

A small model copies what its examples show - a name, a price, a count - into its answers, so an
example that shares an entity, a number or most of its wording with an evaluation question makes
the score measure copying; a model fine-tuned on such a question would be scored on what it was
taught. Every file under ``data/eval/`` (all splits) is read at run time.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from shared.core.files import DATA_DIR, read_jsonl
from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_NAMES

# Capitalised words that name nothing: the shop itself, question words, SQL keywords, languages.
ALLOWED = frozenset({
    "maru", "i", "what", "how", "select", "from", "where", "join", "on", "like", "and", "or", "as", "count",
    "sum", "limit", "order", "by", "group", "korean", "english",
})
# Function words, left out of the word overlap and ignored at the start of a sentence.
STOP_WORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "be", "to", "of", "in", "on", "at", "for", "from", "by", "with",
    "and", "or", "it", "its", "this", "that", "what", "which", "who", "how", "do", "does", "did", "i", "me",
    "my", "we", "our", "us", "you", "your", "can", "will", "would", "please", "there", "s", "many", "much",
})
# Common words that are capitalised only because a sentence starts with them.
SENTENCE_STARTERS = STOP_WORDS | {
    "where", "when", "why", "whose", "if", "within", "could", "should", "has", "have", "once", "convert",
    "translate", "write", "compute", "divide", "find", "look", "list", "tell", "say", "suggest", "explain",
    "summarise", "summarize", "give", "show", "draft", "check", "going", "keep", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
}
IGNORED_NUMBERS = frozenset({"0", "1", "2", "10"})
MAX_OVERLAP = 0.5
# The questions whose tool decisions the 0.5B model is fine-tuned on (issue 16).
TOOL_QUESTIONS = DATA_DIR / "finetune" / "tool_questions.jsonl"

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*|[가-힣]{2,}")
_SENTENCE_END = re.compile(r"(^|[.!?:\n])[\s\"'(\[]*$")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[^\W_]+")


def named_entities(text: str) -> set[str]:
    """Capitalised names (each multi-word run and each of its words) and Hangul words, lowercased.

    Example: ``named_entities("Ask Emma Schulz in Berlin")`` is ``{"emma schulz", "emma", "schulz",
    "berlin"}`` - "Ask" starts the sentence but is no common word, so it stays as well.
    """
    runs: list[list[str]] = []
    last_end = None
    for match in _TOKEN.finditer(text):
        word = match.group()
        if "가" <= word[0] <= "힣":
            runs.append([word])
            last_end = None
            continue
        lowered = word.lower()
        starts_sentence = bool(_SENTENCE_END.search(text[: match.start()]))
        if (not word[0].isupper() or lowered in ALLOWED
                or (starts_sentence and lowered in SENTENCE_STARTERS)):
            last_end = None
            continue
        if last_end is not None and text[last_end:match.start()] == " ":
            runs[-1].append(word)
        else:
            runs.append([word])
        last_end = match.end()
    found = {" ".join(run).lower() for run in runs}
    return found | {word.lower() for run in runs for word in run}


def numbers(text: str) -> set[str]:
    """The numbers in ``text``, normalised (``"1,630"`` and ``"1630.0"`` are ``"1630"``), bar 0, 1, 2 and 10."""
    found = set()
    for raw in _NUMBER.findall(text):
        value = Decimal(raw.rstrip(",").replace(",", "")).normalize()
        found.add(format(value, "f"))
    return found - IGNORED_NUMBERS


def words(text: str) -> set[str]:
    """Lowercased letters-and-digits tokens (Hangul included), less the stop words."""
    return set(_WORD.findall(text.lower())) - STOP_WORDS


def overlap(example: str, question: str) -> float:
    """The share of the example's words that the question also has."""
    mine = words(example)
    return len(mine & words(question)) / len(mine) if mine else 0.0


def strings(value: Any) -> Iterator[str]:
    """Every string and number in a nested JSON value (a ``history`` of turns, a tool's arguments)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield str(value)


def example_text(example: dict[str, Any]) -> str:
    """All an example shows the model: its question, arguments, tool result and next arguments."""
    parts = [example["question"], *strings(example.get("args", {})), example.get("result", "")]
    return "\n".join(parts + list(strings(example.get("next", {}).get("args", {}))))


def eval_questions() -> list[tuple[str, str]]:
    """``(where, text)`` for every question and ``history`` turn of every evaluation file."""
    found = []
    for path in sorted((DATA_DIR / "eval").glob("**/*.jsonl")):
        where = path.relative_to(DATA_DIR).as_posix()
        for item in read_jsonl(path, required=("question",)):
            name = f"{where} {item.get('id', '?')}"
            found.append((name, item["question"]))
            found += [(f"{name} (history)", turn) for turn in strings(item.get("history", []))]
    return found


def shop_values() -> tuple[set[str], set[str], set[str]]:
    """The shop database's names (products, models, customers, cities; lowercased), the names in
    any of its text values (``named_entities``), and its numbers (dates and codes included)."""
    names: set[str] = set()
    entities: set[str] = set()
    found: set[str] = set()
    with sqlite3.connect(f"file:{DATA_DIR / 'shop.db'}?mode=ro", uri=True) as connection:
        for table in ("products", "customers", "orders"):
            for row in connection.execute(f"SELECT * FROM {table}"):
                for value in row:
                    found |= numbers(str(value))
                    entities |= named_entities(value) if isinstance(value, str) else set()
        for query in ("SELECT name, model FROM products", "SELECT name, city FROM customers"):
            names |= {value.lower() for row in connection.execute(query) for value in row}
    connection.close()
    return names, entities, found


def leaks(examples: list[dict[str, Any]], questions: list[tuple[str, str]],
          shop: tuple[set[str], set[str], set[str]]) -> list[str]:
    """Every way the examples leak the questions or the shop database, one line each."""
    shop_names, shop_entities, shop_numbers = shop
    problems = []
    for example in examples:
        text, asked = example_text(example), example["question"]
        mine_entities, mine_numbers = named_entities(text), numbers(text)
        for where, question in questions:
            if shared := mine_entities & named_entities(question):
                problems.append(f"example {asked!r} shares names {sorted(shared)} with {where}: {question!r}")
            if shared := mine_numbers & numbers(question):
                problems.append(f"example {asked!r} shares numbers {sorted(shared)} with {where}: {question!r}")
            if (share := overlap(asked, question)) > MAX_OVERLAP:
                problems.append(f"example {asked!r} shares {share:.0%} of its words with {where}: {question!r}")
        lowered = text.lower()
        named = {name for name in shop_names if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", lowered)}
        if named := named | (mine_entities & shop_entities):
            problems.append(f"example {asked!r} names {sorted(named)} from the shop database")
        if shared := mine_numbers & shop_numbers:
            problems.append(f"example {asked!r} holds numbers {sorted(shared)} from the shop database")
    return problems


@pytest.fixture(scope="module")
def questions() -> list[tuple[str, str]]:
    found = eval_questions()
    assert found, "no evaluation questions under data/eval/"
    return found


@pytest.fixture(scope="module")
def shop() -> tuple[set[str], set[str], set[str]]:
    names, entities, found = shop_values()
    assert {"breeze fan", "sato haruka", "osaka"} <= names and {"pebble", "kr"} <= entities and "69000" in found
    return names, entities, found


def test_the_examples_share_no_name_number_or_wording_with_the_evaluation_sets_or_the_shop(questions, shop):
    problems = leaks(TOOL_EXAMPLES, questions, shop)
    assert not problems, "\n".join(problems)


def test_the_fine_tuning_questions_share_no_name_number_or_wording_with_the_evaluation_sets_or_the_shop(
        questions, shop):
    asked = read_jsonl(TOOL_QUESTIONS, required=("id", "question", "expected_tool"))
    problems = leaks([{"question": item["question"]} for item in asked], questions, shop)
    assert not problems, "\n".join(problems)


def test_the_fine_tuning_questions_have_unique_ids_and_known_tools():
    asked = read_jsonl(TOOL_QUESTIONS, required=("id", "question", "expected_tool"))
    ids = [item["id"] for item in asked]
    assert len(ids) == len(set(ids)), sorted({name for name in ids if ids.count(name) > 1})
    unknown = [(item["id"], item["expected_tool"]) for item in asked
               if item["expected_tool"] is not None and item["expected_tool"] not in TOOL_NAMES]
    assert not unknown, unknown
    assert {item["expected_tool"] for item in asked} == {*TOOL_NAMES, None}


def test_the_helpers_find_names_numbers_and_words():
    assert named_entities("What time is it where Emma Schulz lives, in Los Angeles? The 달 무드등 is on.") == {
        "emma schulz", "emma", "schulz", "los angeles", "los", "angeles", "무드등"}
    assert named_entities("SELECT price_won FROM products WHERE name LIKE '%Kestrel blender%'") == {"kestrel"}
    assert numbers("Pay 1,630 won, 12.50% off, 3 times, in 2026-11-28; 0 or 1 or 2 or 10 do not count.") == {
        "1630", "12.5", "3", "2026", "11", "28"}
    assert words("How many Pebble speakers are in stock?") == {"pebble", "speakers", "stock"}
    assert overlap("How many Pebble speakers are in stock?", "Pebble speakers: in stock?") == 1.0


def test_the_check_catches_a_planted_leak(questions, shop):
    where, question = max(questions, key=lambda pair: len(words(pair[1])))
    copied = {"question": question, "action": "answer"}
    assert any(where in line and "of its words" in line for line in leaks([copied], questions, shop))
    shop_leak = {"question": "Are any left?", "action": "sql_query",
                 "args": {"query": "SELECT stock FROM products WHERE name = 'Haneul kettle'"},
                 "result": "stock\n129000\n(1 row)", "next": {"action": "answer"}}
    found = leaks([shop_leak], [], shop)
    assert any("haneul kettle" in line for line in found) and any("'129000'" in line for line in found)
