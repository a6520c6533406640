"""The chat graph's parts: trimming by the model's own token counter, question cleaning, the REPL."""

from __future__ import annotations

import io

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph

from shared.core.errors import RoadmapError
from shared.memory.conversation import (
    ChatState,
    Conversation,
    atomic_turn,
    clean_question,
    history_budget,
    run_repl,
    trim_history,
    with_summary,
)
from shared.memory.store import open_memory
from shared.models.fake import ScriptedChatModel


def echo_graph(model, checkpointer):
    """The smallest chat graph: the model answers the whole thread (step 4 writes the real one)."""
    builder = StateGraph(ChatState)
    builder.add_node("respond", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


def test_trim_keeps_the_system_message_and_the_latest_turns():
    model = ScriptedChatModel()
    history = [HumanMessage("one two three"), AIMessage("four five"), HumanMessage("six seven"), AIMessage("eight"),
               HumanMessage("nine ten")]
    kept = trim_history(history, model, budget=8, system=SystemMessage("sys tem"))
    assert [m.text for m in kept] == ["sys tem", "six seven", "eight", "nine ten"]
    assert model.get_num_tokens_from_messages(kept) <= 8


def test_a_message_that_cannot_fit_is_a_clear_error():
    with pytest.raises(RoadmapError, match="does not fit in the model's 3-token budget"):
        trim_history([HumanMessage("far too many words here")], ScriptedChatModel(), 3, SystemMessage("x"))


def test_summary_goes_into_the_system_message_when_there_is_one():
    assert with_summary("Be brief.", "").text == "Be brief."
    summarized = with_summary("Be brief.", "Mina, order 4417.").text
    assert summarized == "Be brief.\n\nSummary of the earlier conversation: Mina, order 4417."


def test_budget_is_the_context_minus_the_answer():
    assert history_budget(ScriptedChatModel()) == 8192 - 512


def test_clean_question():
    assert clean_question('Rewritten question: "Is it red?"\nMore text', "x") == "Is it red?"
    assert clean_question("  \n", "fallback") == "fallback"


def test_conversation_streams_the_answer_and_counts_turns(tmp_path):
    model = ScriptedChatModel(responses=["Nice to meet you, Mina."])
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(echo_graph(model, memory.saver), memory)
        pieces = []
        result = chat.send("t", "I am Mina", on_token=pieces.append)
        assert "".join(pieces) == "Nice to meet you, Mina." == result["answer"]
        assert result["turns"] == 1 and result["question"] is None and result["sources"] == []
        with pytest.raises(RoadmapError, match="the message is empty"):
            chat.send("t", "   ")


def stored(memory, thread):
    """Every row the checkpointer keeps for a thread: checkpoints and pending writes."""
    query = "SELECT * FROM {} WHERE thread_id = ? ORDER BY checkpoint_id"
    return [memory.saver.conn.execute(query.format(table), (thread,)).fetchall() for table in ("checkpoints", "writes")]


def budget_graph(model, checkpointer, budget):
    """A chat graph that trims to ``budget`` tokens before the model answers, as step 4's does."""
    builder = StateGraph(ChatState)
    builder.add_node("respond", lambda state: {
        "messages": [model.invoke(trim_history(state["messages"], model, budget, SystemMessage("Be brief.")))]})
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


def test_a_failed_turn_leaves_the_thread_exactly_as_it_was(tmp_path):
    def server_down(messages):
        raise RoadmapError("cannot reach the model server http://127.0.0.1:9; start it")

    model = ScriptedChatModel(responses=["Hello, Mina.", server_down, "Your name is Mina."])
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(budget_graph(model, memory.saver, budget=60), memory)
        assert chat.send("t", "I am Mina")["turns"] == 1
        before = stored(memory, "t")
        # Refused as over the budget, before the model is called: once stored as a question
        # without an answer.
        with pytest.raises(RoadmapError, match="does not fit in the model's 60-token budget"):
            chat.send("t", " ".join(["word"] * 200))
        assert stored(memory, "t") == before
        with pytest.raises(RoadmapError, match="cannot reach the model server"):
            chat.send("t", "What is my name?")
        assert stored(memory, "t") == before
        assert chat.send("t", "What is my name?")["turns"] == 2
        assert [m.text for m in memory.history("t")] == ["I am Mina", "Hello, Mina.", "What is my name?",
                                                         "Your name is Mina."]
        # A thread whose first turn fails is not created at all.
        with pytest.raises(RoadmapError):
            chat.send("new", " ".join(["word"] * 200))
        assert not memory.exists("new") and stored(memory, "new") == [[], []]


def test_atomic_turn_undoes_only_its_own_thread_and_turn(tmp_path):
    model = ScriptedChatModel(responses=["one", "two", "three"])
    with open_memory(tmp_path / "m.sqlite") as memory:
        graph = echo_graph(model, memory.saver)
        config = {"configurable": {"thread_id": "t"}}
        with atomic_turn(memory, "t"):
            graph.invoke({"messages": [HumanMessage("first")]}, config)
        with atomic_turn(memory, "other"):
            graph.invoke({"messages": [HumanMessage("elsewhere")]}, {"configurable": {"thread_id": "other"}})
        before, other = stored(memory, "t"), stored(memory, "other")
        with pytest.raises(KeyboardInterrupt), atomic_turn(memory, "t"):
            graph.invoke({"messages": [HumanMessage("second")]}, config)
            raise KeyboardInterrupt  # Ctrl-C after the turn was saved: it is undone all the same
        assert stored(memory, "t") == before and stored(memory, "other") == other
        assert [m.text for m in memory.history("t")] == ["first", "one"]


def test_repl_commands(tmp_path):
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(echo_graph(ScriptedChatModel(), memory.saver), memory)
        out = io.StringIO()
        lines = io.StringIO("hello there\n\n/history\n/nope\n/reset\n/history\n/exit\nnever read\n")
        assert run_repl(chat, "t", lines, out) == 0
        text = out.getvalue()
        assert "thread 't' (0 earlier turns)" in text
        assert "bot> [fake] hello there\n" in text
        assert "User: hello there\nAssistant: [fake] hello there\n" in text
        assert "unknown command /nope" in text
        assert "thread 't' forgotten\nyou> (no messages yet)" in text
        assert "never read" not in text
        assert memory.history("t") == []
