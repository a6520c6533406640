"""The chat graph: trimming by the model's own token counter, summaries, question rewriting."""

from __future__ import annotations

import io

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from shared.conversation import (
    Conversation,
    build_chat_graph,
    clean_question,
    history_budget,
    run_repl,
    trim_history,
)
from shared.errors import RoadmapError
from shared.fake import ScriptedChatModel
from shared.memory import open_memory

SYSTEM = "Be brief."


def talk(graph, turns, thread="t"):
    for n in range(turns):
        graph.invoke({"messages": [HumanMessage(f"message {n} " + "word " * (n % 7))]}, {"configurable": {"thread_id": thread}})


def answer_calls(model):
    return [received for received in model.received if "Summary so far:" not in received[-1].text]


def test_trim_keeps_the_system_message_and_the_latest_turns():
    model = ScriptedChatModel()
    history = [HumanMessage("one two three"), AIMessage("four five"), HumanMessage("six seven"), AIMessage("eight"), HumanMessage("nine ten")]
    kept = trim_history(history, model, budget=8, system=SystemMessage("sys tem"))
    assert [m.text for m in kept] == ["sys tem", "six seven", "eight", "nine ten"]
    assert model.get_num_tokens_from_messages(kept) <= 8


def test_a_message_that_cannot_fit_is_a_clear_error():
    with pytest.raises(RoadmapError, match="does not fit in the model's 3-token budget"):
        trim_history([HumanMessage("far too many words here")], ScriptedChatModel(), 3, SystemMessage("x"))


def test_two_hundred_turns_never_exceed_the_budget():
    model = ScriptedChatModel()
    graph = build_chat_graph(model, InMemorySaver(), budget=60, system=SYSTEM)
    talk(graph, 200)
    calls = answer_calls(model)
    assert len(calls) == 200
    assert max(model.get_num_tokens_from_messages(call) for call in calls) <= 60
    assert all(call[0].text == SYSTEM for call in calls)
    assert calls[-1][-1].text.startswith("message 199")
    # Trimmed for the model, but the thread keeps every message.
    state = graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert len(state["messages"]) == 400


def test_summary_of_trimmed_turns_is_optional_and_stays_within_budget():
    model = ScriptedChatModel()
    graph = build_chat_graph(model, InMemorySaver(), budget=60, system=SYSTEM, summarize=True)
    talk(graph, 200)
    calls = answer_calls(model)
    assert len(calls) == 200 and len(model.received) > 200
    assert max(model.get_num_tokens_from_messages(call) for call in model.received) <= 60
    assert "Summary of the earlier conversation: [fake]" in calls[-1][0].text
    assert graph.get_state({"configurable": {"thread_id": "t"}}).values["summarized"] > 300


def test_budget_is_the_context_minus_the_answer():
    assert history_budget(ScriptedChatModel()) == 8192 - 512


def test_follow_up_is_rewritten_from_the_history_before_retrieval():
    model = ScriptedChatModel(responses=["Rewritten question: \"How long is the Breeze fan's warranty?\""])
    asked = []

    def rag(question):
        asked.append(question)
        return {"question": question, "answer": f"answer {len(asked)} [1].", "sources": [{"source": "fan.md"}]}

    graph = build_chat_graph(model, InMemorySaver(), budget=500, rag_chain=RunnableLambda(rag))
    config = {"configurable": {"thread_id": "r"}}
    first = graph.invoke({"messages": [HumanMessage("How long is the Aurora lamp's warranty?")]}, config)
    assert first["question"] == "How long is the Aurora lamp's warranty?" and model.received == []
    second = graph.invoke({"messages": [HumanMessage("and what about the Breeze fan?")]}, config)
    assert asked[-1] == second["question"] == "How long is the Breeze fan's warranty?"
    prompt = model.received[0][-1].text
    assert "User: How long is the Aurora lamp's warranty?\nAssistant: answer 1 [1]." in prompt
    assert "Follow-up question: and what about the Breeze fan?" in prompt
    assert second["sources"] == [{"source": "fan.md"}] and second["messages"][-1].text == "answer 2 [1]."


def test_clean_question():
    assert clean_question('Rewritten question: "Is it red?"\nMore text', "x") == "Is it red?"
    assert clean_question("  \n", "fallback") == "fallback"


def test_conversation_streams_the_answer_and_counts_turns(tmp_path):
    model = ScriptedChatModel(responses=["Nice to meet you, Mina."])
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(build_chat_graph(model, memory.saver, budget=500), memory)
        pieces = []
        result = chat.send("t", "I am Mina", on_token=pieces.append)
        assert "".join(pieces) == "Nice to meet you, Mina." == result["answer"]
        assert result["turns"] == 1
        with pytest.raises(RoadmapError, match="the message is empty"):
            chat.send("t", "   ")


def test_repl_commands(tmp_path):
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(build_chat_graph(ScriptedChatModel(), memory.saver, budget=500), memory)
        out = io.StringIO()
        assert run_repl(chat, "t", io.StringIO("hello there\n\n/history\n/nope\n/reset\n/history\n/exit\nnever read\n"), out) == 0
        text = out.getvalue()
        assert "thread 't' (0 earlier turns)" in text
        assert "bot> [fake] hello there\n" in text
        assert "User: hello there\nAssistant: [fake] hello there\n" in text
        assert "unknown command /nope" in text
        assert "thread 't' forgotten\nyou> (no messages yet)" in text
        assert "never read" not in text
        assert memory.history("t") == []
