"""Fixtures of the memory tests: a one-node graph that echoes, and one turn of it on a thread."""

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph


@pytest.fixture
def echo_graph():
    """Build a graph that answers "echo <message>", on the given checkpointer."""

    def build(saver):
        builder = StateGraph(MessagesState)
        builder.add_node("echo", lambda state: {"messages": [AIMessage(f"echo {state['messages'][-1].text}")]})
        builder.add_edge(START, "echo")
        builder.add_edge("echo", END)
        return builder.compile(checkpointer=saver)

    return build


@pytest.fixture
def say(echo_graph):
    """Send one message on a thread of a memory, inside the memory's per-thread turn lock."""

    def send(memory, thread_id, text):
        with memory.turn(thread_id):
            echo_graph(memory.saver).invoke({"messages": [("user", text)]}, {"configurable": {"thread_id": thread_id}})

    return send
