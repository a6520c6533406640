"""Every verb of ``roadmap``, driven with random option values: it ends with exit 0 or 2, a failure
is one line on stderr, and nothing ever prints a traceback.

Each verb runs in this process on the fake model and the fake embeddings, with its files under
the test's temp folder. Numbers are drawn mostly in range, some just outside it and some not
numbers at all; texts are any Unicode. Bounded so the verbs end: ``serve`` returns as soon as
it would start serving, ``finetune train`` trains with a stand-in loop, ``finetune status``
polls no real job, and ``tour`` (no options of its own) is left to test_cli_main.py.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadmap.cli.main import main
from shared.core.files import DATA_DIR

# Derandomized: the same examples every run, so the suite stays deterministic.
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NOT_NUMBERS = ["", " ", "x", "1.5", "nan", "inf", "-inf", "1e400", "0x10", "--", "١٢"]

texts = st.text(max_size=30)
threads = st.one_of(st.sampled_from(["t", "default", "web-1"]), st.text(max_size=12))


def number(low: float, high: float, whole: bool = True) -> st.SearchStrategy[str]:
    """Mostly a value from ``low`` to ``high``; sometimes just outside, huge, or not a number."""
    inside = st.integers(int(low), int(high)) if whole else st.floats(low, high)
    return st.one_of(inside.map(str), inside.map(str), st.sampled_from([low - 1, high + 1, -1, 0, 10**12]).map(str),
                     st.sampled_from(NOT_NUMBERS), st.text(max_size=4))


def options(choices: dict[str, st.SearchStrategy[str] | None]) -> st.SearchStrategy[list[str]]:
    """Some of ``choices`` in a random order, each with a drawn value (``None``: a flag)."""
    one = [st.just([name]) if value is None else value.map(lambda v, name=name: [name, v])
           for name, value in choices.items()]
    return st.lists(st.one_of(one), max_size=len(one)).map(lambda parts: [word for part in parts for word in part])


def drive(argv: list[str], stdin: str = "") -> int:
    """Run ``roadmap`` on the fakes; check the exit code and stderr; return the code."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), patch("sys.stdin", io.StringIO(stdin)):
        code = main(["--model", "fake", "--embeddings", "fake", *argv])
    text = err.getvalue()
    assert code in (0, 2), (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    if code == 2:
        # A progress bar may come first: it erases itself with \r, the error is then the one line.
        assert text.count("\n") == 1 and text.rsplit("\r", 1)[-1].startswith("error: "), (argv, text)
    return code


@pytest.fixture
def places(tmp_path, tiny_docs):
    """Folders and files the options choose among: good ones, missing ones, wrong kinds."""
    sets = tmp_path / "sets"
    sets.mkdir()
    for name in ("rag", "tools", "agent"):
        lines = (DATA_DIR / "eval" / "validation" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        (sets / f"{name}.jsonl").write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    (tmp_path / "garbage.jsonl").write_text("{not json\n", encoding="utf-8")
    return {
        "docs": st.sampled_from([str(tiny_docs), str(tiny_docs / "lamp.md"), str(tmp_path / "missing")]),
        "set": lambda name: st.sampled_from([str(sets / f"{name}.jsonl"), str(tmp_path / "garbage.jsonl"),
                                             str(tmp_path / "missing.jsonl")]),
        "db": st.sampled_from([str(tmp_path / "memory.sqlite"), str(tmp_path / "garbage.jsonl"), str(tmp_path)]),
        "file": st.sampled_from([str(tmp_path / "garbage.jsonl"), str(tmp_path / "missing.jsonl"),
                                 str(sets / "rag.jsonl")]),
        "out": st.sampled_from([str(tmp_path / "dataset"), str(tmp_path / "garbage.jsonl")]),
    }


def retrieval(places) -> dict[str, st.SearchStrategy[str] | None]:
    return {"--docs": places["docs"], "--k": number(1, 50), "--mode": st.sampled_from(["dense", "lexical", "hybrid",
                                                                                        "x"]),
            "--max-tokens": number(1, 16384)}


def test_list_and_doctor():
    @EXAMPLES
    @given(verb=st.sampled_from([["list"], ["doctor"]]), flags=options({"--json": None, "--bogus": None}))
    def run(verb, flags):
        drive([*verb, *flags])

    run()


def test_run(places):
    steps = st.one_of(
        options({"--task": st.sampled_from(["all", "classify", "x"]), "--input": texts,
                 "--max-tokens": number(1, 16384), "--show-prompt": None}).map(lambda o: ["1", *o]),
        options({"--message": texts, "--concurrency": number(1, 16), "--max-tokens": number(1, 16384),
                 "--inbox": places["file"]}).map(lambda o: ["2", *o]),
        options({"--question": texts, "--max-tokens": number(1, 16384)}).map(lambda o: ["5", *o]),
        options({"--question": texts, "--max-tokens": number(1, 16384), "--max-tool-calls": number(1, 20)})
        .map(lambda o: ["6", *o]),
        st.tuples(st.sampled_from(["0", "8", "x", ""]), texts).map(list),
    )

    @EXAMPLES
    @given(step=steps, flags=options({"--json": None}))
    def run(step, flags):
        drive(["run", *step, *flags])

    run()


def test_ask_and_eval(places):
    @EXAMPLES
    @given(question=texts, chosen=options({**retrieval(places), "--json": None}))
    def ask(question, chosen):
        drive(["ask", question, *chosen])

    @settings(EXAMPLES, max_examples=10)
    @given(suite=st.sampled_from(["rag", "tools", "agent"]), data=st.data())
    def evaluate(suite, data):
        extra = {"rag": {**retrieval(places), "--retrieval-only": None},
                 "tools": {"--examples": None},
                 "agent": {"--no-examples": None, "--no-plan": None, "--split": st.sampled_from(["dev", "test", "x"]),
                           "--max-tokens": number(1, 16384)}}[suite]
        chosen = data.draw(options({"--set": places["set"](suite), "--json": None, **extra}))
        drive(["eval", suite, *chosen])

    ask()
    evaluate()


def test_chat_threads_and_agent(places):
    chat_options = {"--thread": threads, "--message": texts, "--rag": None, "--summarize": None,
                    "--budget": number(1, 1_000_000), "--db": places["db"], "--json": None, **retrieval(places)}

    @EXAMPLES
    @given(chosen=options(chat_options), lines=st.lists(texts, max_size=3))
    def chat(chosen, lines):
        drive(["chat", *chosen], stdin="\n".join([*lines, "/exit", ""]))

    @EXAMPLES
    @given(question=texts, chosen=options({"--thread": threads, "--db": places["db"], "--max-tool-calls": number(1, 20),
                                           "--no-plan": None, "--max-tokens": number(1, 16384), "--json": None}))
    def agent(question, chosen):
        drive(["agent", question, *chosen])

    @EXAMPLES
    @given(delete=st.one_of(st.just([]), threads.map(lambda t: ["delete", t])),
           chosen=options({"--db": places["db"], "--json": None}))
    def listing(delete, chosen):
        drive(["threads", *delete, *chosen])

    chat()
    agent()
    listing()


def test_serve(places, monkeypatch):
    # Everything up to serving runs (the port is bound, the model loaded); serving returns at once.
    monkeypatch.setattr("roadmap.web.server.run_server", lambda app, sock: None)

    @EXAMPLES
    @given(chosen=options({"--host": st.sampled_from(["127.0.0.1", "localhost", "::1"]), "--port": number(0, 65535),
                           "--allow-host": st.one_of(st.just("chat.lan"), texts), "--db": places["db"],
                           **retrieval(places)}))
    def run(chosen):
        drive(["serve", *chosen])

    run()


def test_finetune(places, fake_training, tmp_path):
    @EXAMPLES
    @given(chosen=options({"--validation-share": number(0, 0.99, whole=False), "--out": places["out"],
                           "--force": None, "--memory": None, "--db": places["db"], "--json": None}))
    def build(chosen):
        drive(["finetune", "build", *chosen])

    @EXAMPLES
    @given(file=st.one_of(st.just([]), places["file"].map(lambda f: [f])),
           chosen=options({"--target": st.sampled_from(["fake", "openai:gpt-4o-mini", "bogus"]),
                           "--max-tokens": number(1, 100_000), "--price-per-mtok": number(0, 100, whole=False),
                           "--epochs": number(1, 100), "--json": None}))
    def validate(file, chosen):
        drive(["finetune", "validate", *file, *chosen])

    @settings(EXAMPLES, max_examples=10)
    @given(chosen=options({"--trainer": st.sampled_from(["local-embeddings", "openai", "x"]),
                           "--name": st.one_of(st.just("minilm-test"), texts), "--epochs": number(1, 100),
                           "--batch-size": number(2, 1024), "--learning-rate": number(0, 1, whole=False),
                           "--max-seq-length": number(16, 512), "--force": None, "--yes-upload": None,
                           "--data": st.sampled_from([str(tmp_path / "dataset"), str(tmp_path / "missing")])}))
    def train(chosen):
        drive(["finetune", "train", *chosen])

    @EXAMPLES
    @given(name=texts.map(lambda text: f"x{text}"),
           chosen=options({"--wait": None, "--interval": number(0, 3600, whole=False), "--json": None}))
    def status(name, chosen):
        # No artifact has these names: the status is refused before any poll or wait.
        assert drive(["finetune", "status", name, *chosen]) == 2

    @EXAMPLES
    @given(name=texts.map(lambda text: f"x{text}"), chosen=options({"--k": number(1, 50), "--docs": places["docs"],
                                                                    "--set": places["set"]("rag"), "--json": None}))
    def evaluate(name, chosen):
        # No artifact has these names either: nothing loads the real MiniLM.
        assert drive(["finetune", "eval", "--name", name, *chosen]) == 2

    build()
    validate()
    train()
    status()
    evaluate()
    assert drive(["finetune", "list", "--json"]) == 0

