"""Strict scoring: does an answer hold an expected fragment, and did an agent call the right chain.

A scorer that passes on the wrong answer is worse than none, so matching is strict:

* citation markers (``[1]``, ``[2, 3]``) are removed before matching, so an expected ``"4"``
  cannot match a citation;
* numbers are whole tokens: ``"6900"`` does not match ``"69000"``, ``"1:30"`` not ``"11:30"``,
  ``"2"`` not ``"2.5"``; thousands separators and trailing decimal zeros are normalised
  (``"8,000.00"`` is ``"8000"``); an expected decimal accepts a more precise answer that rounds
  to it (``"340.19"`` in ``"340.1942775"``), never a coarser one;
* words are whole words: ``"Au"`` does not match ``"because"`` (Hangul may take particles:
  ``"환불"`` matches ``"환불은"``);
* units are normalised after a number: ``"9 watts"``, ``"9W"`` and ``"9 w"`` are one thing, as
  are ``"24 months"``, ``"24-month"`` and ``"24개월"``;
* ``"a|b"`` accepts either alternative.

``fragment_in_question`` lets a question set refuse, when it loads, a fragment that its own
question already contains (the answer would pass by echoing the question).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

_CITATION = re.compile(r"\[\s*\d+(?:\s*[,\-\u2013]\s*\d+)*\s*\]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_DIGIT_THEN_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])")
_NUMBER_TOKEN = re.compile(r"(?<![\d.:,])\d+(?:\.\d+)?(?![\d]|[.:,]\d)")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PERCENT = re.compile(r"(?<=\d)\s*(?:%|percent\b|per cent\b|퍼센트)")
# Unit spellings -> one form. English names need a word boundary after them; Korean units
# do not (a particle may follow: "24개월이며").
_UNITS = {
    "w": ("watts", "watt", "w", "와트"),
    "v": ("volts", "volt", "v", "볼트"),
    "h": ("hours", "hour", "hrs", "hr", "h", "시간"),
    "min": ("minutes", "minute", "mins", "min", "분"),
    "month": ("months", "month", "mo", "개월"),
    "year": ("years", "year", "yrs", "yr", "년"),
    "day": ("days", "day"),
    "kg": ("kilograms", "kilogram", "kilos", "kilo", "kg"),
    "g": ("grams", "gram", "g"),
    "lb": ("pounds", "pound", "lbs", "lb"),
    "cm": ("centimetres", "centimeters", "centimetre", "centimeter", "cm"),
    "mm": ("millimetres", "millimeters", "millimetre", "millimeter", "mm"),
    "m": ("metres", "meters", "metre", "meter", "m"),
    "in": ("inches", "inch", "in"),
    "ft": ("feet", "foot", "ft"),
    "ml": ("millilitres", "milliliters", "millilitre", "milliliter", "ml"),
    "l": ("litres", "liters", "litre", "liter", "l", "리터"),
    "cup": ("cups", "cup"),
    "k": ("kelvin", "k"),
    "won": ("won", "krw", "원"),
}
_UNIT_OF = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}
_UNIT = re.compile(
    r"(?<=\d)[ -]?("
    + "|".join(sorted((re.escape(s) for s in _UNIT_OF if s.isascii()), key=len, reverse=True))
    + r")\b|(?<=\d) ?("
    + "|".join(sorted((re.escape(s) for s in _UNIT_OF if not s.isascii()), key=len, reverse=True))
    + ")"
)


def _decimal(match: re.Match[str]) -> str:
    fraction = match.group(2).rstrip("0")
    return match.group(1) + ("." + fraction if fraction else "")


def _unit(match: re.Match[str]) -> str:
    return " " + _UNIT_OF[(match.group(1) or match.group(2)).lower()]


def normalise(text: str) -> str:
    """Text as the scorers compare it: citations out, numbers and units in one form, lower case.

    Example:
        >>> normalise("Three fans cost 387,000 Won [1]. It draws 9W [2, 3].")
        'three fans cost 387000 won . it draws 9 w .'
    """
    text = _CITATION.sub(" ", str(text).replace("\u2019", "'").replace("\u00a0", " "))
    text = _THOUSANDS.sub("", text.casefold())
    text = _DECIMAL.sub(_decimal, text)
    text = _PERCENT.sub(" %", text)
    text = _UNIT.sub(_unit, text)
    text = _DIGIT_THEN_LETTER.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _found(text: str, option: str) -> bool:
    """Whether ``option`` occurs in ``text`` (both normalised) as whole tokens."""
    if not option:
        return False
    start = text.find(option)
    while start != -1:
        end = start + len(option)
        before, after = text[start - 1:start], text[end:end + 1]
        number_before = before == "." and text[start - 2:start - 1].isdigit() and option[0].isdigit()
        number_after = after in ".:," and text[end + 1:end + 2].isdigit() and option[-1].isdigit()
        if not ((_word_char(option[0]) and _word_char(before)) or (_word_char(option[-1]) and _word_char(after))
                or number_before or number_after):
            return True
        start = text.find(option, start + 1)
    return False


def _same_number(text: str, number: str) -> bool:
    """Whether ``text`` holds ``number`` as a whole number; an expected decimal also matches a
    more precise one that rounds to it (``"340.19"`` in ``"340.1942775 g"``), never the reverse."""
    places = len(number.partition(".")[2])
    for token in _NUMBER_TOKEN.findall(text):
        if token == number:
            return True
        if places and len(token.partition(".")[2]) > places:
            rounded = Decimal(token).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
            if str(rounded) == number:
                return True
    return False


def holds(answer: str, fragment: str) -> bool:
    """Whether ``answer`` contains ``fragment`` (``a|b``: either), by the strict rules above.

    Example:
        >>> holds("It costs 69,000 won [2].", "6900"), holds("It costs 6,900 won.", "6900|6.9")
        (False, True)
    """
    text = normalise(answer)
    options = [normalise(option) for option in str(fragment).split("|")]
    return any(_same_number(text, option) if _PLAIN_NUMBER.fullmatch(option) else _found(text, option)
               for option in options)


def holds_all(answer: str, fragments: Sequence[str]) -> bool:
    """Whether a non-empty ``answer`` holds every fragment (none given: any non-empty answer)."""
    return bool(str(answer).strip()) and all(holds(answer, fragment) for fragment in fragments)


def fragment_in_question(question: str, fragment: str) -> str | None:
    """The alternative of ``fragment`` that ``question`` already contains, or ``None``.

    Example:
        >>> fragment_in_question("What is 12% of 69000?", "8280|69000"), fragment_in_question("Au?", "gold")
        ('69000', None)
    """
    return next((option for option in str(fragment).split("|") if holds(question, option)), None)


def cited_numbers(answer: str) -> list[int]:
    """The chunk numbers an answer cites, in order, each once: ``"... [2]. ... [1, 3]"`` -> ``[2, 1, 3]``."""
    numbers: list[int] = []
    for marker in _CITATION.findall(answer):
        for number in map(int, re.findall(r"\d+", marker)):
            if number not in numbers:
                numbers.append(number)
    return numbers


def chain_matches(called: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether the tools were called in the expected order (``a|b``: either tool in that place).

    One call repeated right away is fine (a search that found nothing, asked again); any other
    extra call, a missing call or another order is not.

    Example:
        >>> chain_matches(["sql_query", "sql_query", "calculator"], ["sql_query", "calculator"])
        True
        >>> chain_matches(["calculator", "sql_query"], ["sql_query", "calculator"])
        False
    """
    if len(called) > len(expected) + 1:
        return False
    collapsed = [name for i, name in enumerate(called) if i == 0 or name != called[i - 1]]
    if len(called) - len(collapsed) > 1 or len(collapsed) != len(expected):
        return False
    return all(name in slot.split("|") for name, slot in zip(collapsed, expected))


def ran_cleanly(result: str) -> bool:
    """Whether a tool call ran without an error: our tools, and the agent's tool-error
    middleware, hand errors back to the model as ``error: ...``."""
    return not str(result).lstrip().lower().startswith("error")
