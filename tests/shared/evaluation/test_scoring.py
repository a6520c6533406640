"""The strict scorers: whole numbers, no citations, units, ordered chains, clean tool runs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.evaluation.scoring import (
    chain_matches,
    cited_numbers,
    fragment_in_question,
    holds,
    holds_all,
    normalise,
    ran_cleanly,
)


@pytest.mark.parametrize(("answer", "fragment"), [
    ("It costs 69,000 won [2].", "6900"),       # a longer number
    ("Open until 11:30.", "1:30"),              # a longer time
    ("It was 12 in 2026.", "2|two"),            # digits inside other numbers
    ("Because it is gold-plated.", "Au"),       # letters inside a word
    ("See the manual [4].", "4"),               # a citation marker
    ("It weighs 2.5 kg.", "2"),                 # the integer part of a decimal
    ("Version 12.3 fixed it.", "2.3"),          # the end of a longer decimal
    ("About 7.2 cups.", "7.18|7.19"),          # coarser than expected
    ("Version 2.35 fixed it.", "2.3"),         # more precise, but rounds to another value
    ("", "anything"),
])
def test_fragments_that_must_not_match(answer, fragment):
    assert not holds(answer, fragment)


@pytest.mark.parametrize(("answer", "fragment"), [
    ("Three fans cost 387,000 won [1].", "387000"),
    ("It costs 6,900 won.", "6900"),
    ("It draws 9 watts [1].", "9 W"),
    ("A 24-month warranty.", "24 months"),
    ("보증 기간은 24개월입니다 [1].", "24 months"),
    ("129,000원입니다.", "129000 won"),
    ("That is 8,000.00 won.", "8000"),
    ("A 15% fee.", "15 percent"),
    ("Two orders.", "2|two"),
    ("환불은 가능합니다.", "환불|refund"),
    ("The symbol is Au.", "au"),
    ("Pick it up at 1:30 pm.", "1:30"),
    ("It goes from 2700-5600 K.", "5600"),
    ("12 ounces is about 340.1942775 grams.", "340.19"),  # more precise, rounds to it
    ("About 7.185 cups.", "7.18|7.19"),
])
def test_fragments_that_match(answer, fragment):
    assert holds(answer, fragment)


def test_normalise_shows_what_is_compared():
    assert normalise("Three fans cost 387,000 Won [1]. It draws 9W [2, 3].") == \
        "three fans cost 387000 won . it draws 9 w ."


def test_every_fragment_must_hold_and_an_empty_answer_never_does():
    assert holds_all("36,000 won for three.", ["36000", "three|3"])
    assert not holds_all("36,000 won.", ["36000", "three|3"])
    assert holds_all("Any poem.", []) and not holds_all("  ", [])


def test_fragment_in_question_names_the_echoed_alternative():
    assert fragment_in_question("Is it 24 months?", "2 years|24 months") == "24 months"
    assert fragment_in_question("What is 10% of 69000?", "6900") is None


def test_cited_numbers_in_order_once():
    assert cited_numbers("A [2]. B [1, 3]. C [2] [4-5].") == [2, 1, 3, 4, 5]


def test_chains_are_scored_in_order_with_one_retry():
    assert chain_matches(["sql_query", "calculator"], ["sql_query", "calculator"])
    assert not chain_matches(["calculator", "sql_query"], ["sql_query", "calculator"])
    assert chain_matches(["search_docs", "search_docs", "unit_convert"], ["search_docs", "calculator|unit_convert"])
    assert chain_matches([], []) and not chain_matches(["search_docs"], [])
    assert not chain_matches(["sql_query"] * 3, ["sql_query"])
    assert not chain_matches(["sql_query", "sql_query", "calculator", "calculator"], ["sql_query", "calculator"])
    assert not chain_matches(["search_docs", "current_time"], ["search_docs", "calculator|unit_convert"])


def test_a_tool_run_is_clean_unless_it_reports_an_error():
    assert ran_cleanly("7 * 6 = 42") and not ran_cleanly("error: division by zero")
    assert not ran_cleanly("  Error: unknown unit 'furlong'")


@given(st.integers(min_value=10, max_value=10**9), st.integers(min_value=1, max_value=9))
def test_a_number_never_matches_a_longer_number(number, digit):
    assert holds(f"It is {number:,} won.", str(number))
    assert not holds(f"It is {number}{digit} won.", str(number))
    assert not holds(f"It is {digit}{number} won.", str(number))
