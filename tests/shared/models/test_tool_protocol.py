"""The tool-decision protocol: the schema, the prompt, examples, narrowing, plans and the next-step rule."""

from __future__ import annotations

import json
import math

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from shared.models.tool_protocol import (
    FOLLOW_UP_NOTE,
    PLAN_NOTE,
    as_decisions,
    decision_prompt,
    decision_request,
    decision_schema,
    decision_text,
    example_turns,
    has_tool_results,
    narrow_tools,
    next_step,
    read_decision,
    then_options,
    with_system_note,
)


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 12 * (3 + 4)."""
    return "84"


@tool
def current_time(zone: str = "UTC") -> str:
    """The current date and time in an IANA time zone."""
    return "2026-11-28 09:00"


def openai_tools():
    return [convert_to_openai_tool(calculator), convert_to_openai_tool(current_time)]


def test_decision_schema_offers_each_tool_and_answer():
    schema = decision_schema(openai_tools(), allow_answer=True, max_string=50)
    actions = [option["properties"]["action"]["const"] for option in schema["anyOf"]]
    assert actions == ["calculator", "current_time", "answer"]
    expression = schema["anyOf"][0]["properties"]["args"]["properties"]["expression"]
    assert expression["maxLength"] == 50


def test_decision_schema_without_answer_when_a_tool_is_required():
    schema = decision_schema(openai_tools()[:1], allow_answer=False, max_string=50)
    assert schema["properties"]["action"]["const"] == "calculator"


def test_a_planned_decision_names_what_comes_after_the_call():
    plan_tools = ["calculator", "current_time"]
    schema = decision_schema(openai_tools(), allow_answer=True, max_string=50, plan_tools=plan_tools)
    calc, time, answer = schema["anyOf"]
    assert list(calc["properties"]) == ["action", "args", "then"] and calc["required"] == ["action", "args", "then"]
    assert calc["properties"]["then"]["enum"] == ["answer", "current_time"]
    assert time["properties"]["then"]["enum"] == ["answer", "calculator"]
    assert "then" not in answer["properties"]
    assert decision_text("calculator", {"expression": "2"}, ["calculator"]) == (
        '{"action": "calculator", "args": {"expression": "2"}, "then": "answer"}')
    assert decision_text("sql_query", {}, ["sql_query", "calculator"]).endswith('"then": "calculator"}')
    assert decision_text("answer", None, []) == '{"action": "answer"}'


def test_tool_choice_narrows_the_tools_and_the_answer_as_openai_defines_it():
    tools = openai_tools()

    def names(choice):
        allowed, answer = narrow_tools(tools, choice)
        return [t["function"]["name"] for t in allowed], answer

    both = ["calculator", "current_time"]
    assert names(None) == (both, True) and names("auto") == (both, True) and names("required") == (both, False)
    assert names("current_time") == (["current_time"], False)
    assert names({"type": "function", "function": {"name": "calculator"}}) == (["calculator"], False)
    subset = [{"type": "function", "function": {"name": "calculator"}}]

    def allowed(mode):
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": subset}}

    assert names(allowed("auto")) == (["calculator"], True) and names(allowed("required")) == (["calculator"], False)


def test_decision_prompt_lists_tools_and_argument_descriptions():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from shared.tools.toolbox import unit_convert

    prompt = decision_prompt([convert_to_openai_tool(unit_convert)])
    assert "- unit_convert(value: number, from_unit: string, to_unit: string): Convert" in prompt
    assert "    to_unit: The unit wanted." in prompt
    assert prompt.endswith('reply with {"action": "answer"}.')


# Few-shot examples: one tool, a chain of two, and none.
CALC_EXAMPLE = {"question": "6 times 7?", "action": "calculator", "args": {"expression": "6 * 7"}}
CHAIN_EXAMPLE = {"question": "4 speakers at the database price?", "action": "sql_query", "args": {"query": "SELECT 1"},
                 "result": "price_won\n69000", "next": {"action": "calculator", "args": {"expression": "69000 * 4"}}}
POEM_EXAMPLE = {"question": "A poem?", "action": "answer"}


def test_few_shot_examples_become_chat_turns_for_bound_tools_only():
    examples = [CALC_EXAMPLE, {"question": "Weather?", "action": "weather", "args": {}}, POEM_EXAMPLE]
    turns = example_turns(examples, ["calculator"])
    assert [(m.type, m.text) for m in turns] == [
        ("human", "6 times 7?"), ("ai", '{"action": "calculator", "args": {"expression": "6 * 7"}}'),
        ("human", "A poem?"), ("ai", '{"action": "answer"}'),
    ]


def test_examples_with_a_result_show_a_second_round():
    examples = [
        CHAIN_EXAMPLE,
        {"question": "Stock of lamps?", "action": "sql_query", "args": {"query": "SELECT 2"},
         "result": "stock\n0", "next": {"action": "answer"}},
    ]
    turns = example_turns(examples, ["sql_query"])  # the first needs calculator too: dropped
    assert [(m.type, m.text) for m in turns] == [
        ("human", "Stock of lamps?"), ("ai", '{"action": "sql_query", "args": {"query": "SELECT 2"}}'),
        ("tool", "stock\n0"), ("ai", '{"action": "answer"}'),
    ]


def test_planned_examples_say_what_comes_after_the_first_call():
    turns = example_turns([CHAIN_EXAMPLE, CALC_EXAMPLE, POEM_EXAMPLE], ["sql_query", "calculator"], plan=True)
    assert [m.text for m in turns if m.type == "ai"] == [
        '{"action": "sql_query", "args": {"query": "SELECT 1"}, "then": "calculator"}',
        '{"action": "calculator", "args": {"expression": "69000 * 4"}}',
        '{"action": "calculator", "args": {"expression": "6 * 7"}, "then": "answer"}',
        '{"action": "answer"}',
    ]


def test_earlier_tool_calls_readas_decisions():
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    history = [HumanMessage("q"), AIMessage("", tool_calls=[call]), ToolMessage("4", tool_call_id="c1")]
    assert [m.text for m in as_decisions(history)] == [
        "q", '{"action": "calculator", "args": {"expression": "2+2"}}', "4"]
    planned = AIMessage("", tool_calls=[call], additional_kwargs={"plan": ["calculator"]})
    assert as_decisions([planned])[0].text.endswith('"then": "answer"}')


def test_system_note_is_appended_or_added():
    assert with_system_note([HumanMessage("q")], "note")[0].content == "note"
    merged = with_system_note([SystemMessage("base"), HumanMessage("q")], "note")
    assert merged[0].content == "base\n\nnote" and len(merged) == 2


def test_a_later_round_is_one_with_tool_results_after_the_last_question():
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    first = [SystemMessage("sys"), HumanMessage("2+2?")]
    later = [*first, AIMessage("", tool_calls=[call]), ToolMessage("4", tool_call_id="c1")]
    assert not has_tool_results(first) and has_tool_results(later)
    assert not has_tool_results([*later, AIMessage("4."), HumanMessage("And 3+3?")])


def test_a_planned_call_may_be_followed_by_the_answer_or_another_tool():
    names = ["calculator", "current_time", "sql_query"]
    assert then_options("calculator", names) == ["answer", "current_time", "sql_query"]


def test_a_first_round_request_describes_every_tool_and_asks_for_a_plan():
    request = decision_request([SystemMessage("sys"), HumanMessage("2+2?")], openai_tools(), "calculator",
                               [CALC_EXAMPLE, POEM_EXAMPLE], plan=True)
    system = request.head[0]
    assert system.type == "system" and system.text.startswith("sys\n\nYou can use these tools:")
    assert "- calculator(" in system.text and "- current_time(" in system.text and PLAN_NOTE in system.text
    # The examples follow the system prompt; the question comes after them.
    assert [m.text for m in request.head[1:]] == [
        "6 times 7?", '{"action": "calculator", "args": {"expression": "6 * 7"}, "then": "answer"}',
        "A poem?", '{"action": "answer"}']
    assert [m.text for m in request.conversation] == ["2+2?"]
    # tool_choice narrows the schema only: one tool, no answer, a plan to end the call.
    assert request.plan and request.names == ["calculator", "current_time"]
    assert request.schema["properties"]["action"] == {"const": "calculator"}
    assert request.schema["properties"]["then"] == {"enum": ["answer", "current_time"]}


def test_a_later_round_follows_up_never_plans_and_reads_earlier_calls_as_decisions():
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    messages = [HumanMessage("2+2?"), AIMessage("", tool_calls=[call], additional_kwargs={"plan": ["calculator"]}),
                ToolMessage("4", tool_call_id="c1")]
    request = decision_request(messages, openai_tools(), plan=True)
    assert not request.plan and FOLLOW_UP_NOTE in request.head[0].text and PLAN_NOTE not in request.head[0].text
    assert [m.text for m in request.conversation] == [
        "2+2?", '{"action": "calculator", "args": {"expression": "2+2"}, "then": "answer"}', "4"]
    assert [option["properties"]["action"]["const"] for option in request.schema["anyOf"]] == [
        "calculator", "current_time", "answer"]
    assert all("then" not in option["properties"] for option in request.schema["anyOf"])


def test_a_decision_is_read_back_with_its_plan():
    assert read_decision('{"action": "answer"}', ["calculator"]) == {"action": "answer"}
    # A decision cut off by the token budget reads as the answer.
    assert read_decision('{"action": "calculator", "args": {"expression": "2', ["calculator"]) == {"action": "answer"}
    planned = json.dumps({"action": "sql_query", "args": {"query": "SELECT 1"}, "then": "calculator"})
    assert read_decision(planned, ["sql_query", "calculator"])["plan"] == ["sql_query", "calculator"]
    # "answer" as written may be weighed again: choose_next gets the options and picks one.
    asked = []

    def choose(options):
        asked.append(options)
        return "calculator"

    alone = json.dumps({"action": "sql_query", "args": {}, "then": "answer"})
    assert read_decision(alone, ["sql_query", "calculator"])["plan"] == ["sql_query"]
    assert read_decision(alone, ["sql_query", "calculator"], choose)["plan"] == ["sql_query", "calculator"]
    assert asked == [["answer", "calculator"]]
    # A tool written as the next step stands: only "answer" is weighed again.
    assert read_decision(planned, ["sql_query", "calculator"], lambda options: "answer")["plan"] == [
        "sql_query", "calculator"]


def test_another_step_follows_when_the_tools_together_outweigh_the_answer():
    options = ["answer", "calculator", "unit_convert"]

    def step(answer, calc, unit, tokens=(0, 1, 2)):
        return next_step([math.log(answer), math.log(calc), math.log(unit)], list(tokens), options)

    assert step(0.45, 0.30, 0.25) == "calculator"
    assert step(0.45, 0.20, 0.35) == "unit_convert"
    assert step(0.60, 0.30, 0.10) == "answer"
    # Options that start with the same token cannot be told apart: the answer stands.
    assert step(0.10, 0.60, 0.30, tokens=(0, 1, 1)) == "answer"
