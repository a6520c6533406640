"""The llama.cpp chat model: chat rendering and decisions on a stand-in engine (unit), real behaviour (e2e)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from shared.core.commands import entry_point
from shared.core.errors import RoadmapError
from shared.models.llamacpp import (
    PROSE_GBNF,
    ContextOverflowError,
    LlamaCppChatModel,
    _prose_grammar,
    to_chat_dicts,
)
from shared.models.prompt_cache import folder_size
from shared.models.tool_protocol import FOLLOW_UP_NOTE, PLAN_NOTE


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 12 * (3 + 4)."""
    return "84"


@tool
def current_time(zone: str = "UTC") -> str:
    """The current date and time in an IANA time zone."""
    return "2026-11-28 09:00"


def openai_tools():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return [convert_to_openai_tool(calculator), convert_to_openai_tool(current_time)]


def test_messages_become_template_dicts_with_tool_calls():
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    dicts = to_chat_dicts(
        [SystemMessage("sys"), HumanMessage("q"), AIMessage("", tool_calls=[call]), ToolMessage("4", tool_call_id="c1")]
    )
    assert [d["role"] for d in dicts] == ["system", "user", "assistant", "tool"]
    # Note: the chat template serialises the arguments itself, so they stay a dict.
    assert dicts[2]["tool_calls"][0]["function"]["arguments"] == {"expression": "2+2"}


def test_images_are_refused_not_dropped():
    picture = HumanMessage([
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
    ])
    with pytest.raises(RoadmapError, match="reads text only, and a message holds image content"):
        to_chat_dicts([picture])
    assert to_chat_dicts([HumanMessage([{"type": "text", "text": "Hi"}])])[0]["content"] == "Hi"


class _FakeEngine:
    """Stands in for llama.cpp: records prompts, keeps the tool prompt's state like ``_Engine``."""

    def __init__(self):
        self.kept, self.prompts = [], []
        self.lock = threading.Lock()
        self.n_ctx = 8192

    def render(self, messages):
        return "".join(f"<{m['role']}>{m['content']}|" for m in messages) + "<assistant>"

    def tokenize(self, text):
        return [ord(c) for c in text]

    def warm(self, prefix):
        self.kept.append("".join(map(chr, prefix)))


def test_decision_keeps_the_tool_prompt_and_follows_up_after_tool_results(monkeypatch):
    model = LlamaCppChatModel(model_path="unused.gguf")
    engine = _FakeEngine()
    model._engine = engine

    def complete(prompt, **kwargs):
        engine.prompts.append("".join(map(chr, prompt)))
        engine.warm(prompt[: kwargs["keep"]])
        yield '{"action": "answer"}', None
        yield "", {"usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}

    monkeypatch.setattr(model, "_complete", complete)
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    first = [SystemMessage("sys"), HumanMessage("2+2?")]
    later = [*first, AIMessage("", tool_calls=[call]), ToolMessage("4", tool_call_id="c1")]
    model._decide(first, openai_tools(), None)
    model._decide(later, openai_tools(), None)
    # Each round's tool prompt (system prompt, tools, examples) is kept; the conversation is not.
    assert all(p.startswith(k) and "2+2?" not in k for p, k in zip(engine.prompts, engine.kept))
    assert engine.kept[0].startswith("<system>sys") and engine.kept[1].startswith("<system>sys")
    # Once tool results are in, the follow-up instructions replace the first round's.
    assert FOLLOW_UP_NOTE not in engine.prompts[0] and FOLLOW_UP_NOTE in engine.kept[1]
    assert "If one tool fits it" in engine.kept[0] and "If one tool fits it" not in engine.kept[1]


@pytest.mark.parametrize("reads", [True, False])
def test_a_model_that_reads_no_examples_decides_without_them(monkeypatch, reads):
    model = LlamaCppChatModel(model_path="unused.gguf", reads_tool_examples=reads)
    engine = _FakeEngine()
    model._engine = engine

    def complete(prompt, **kwargs):
        engine.prompts.append("".join(map(chr, prompt)))
        yield '{"action": "answer"}', None
        yield "", {"usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}, "finish_reason": "stop"}

    monkeypatch.setattr(model, "_complete", complete)
    shown = [{"question": "What is 6 x 7?", "action": "calculator", "args": {"expression": "6 * 7"}}]
    model.bind_tools([calculator], tool_examples=shown).invoke([HumanMessage("2+2?")])
    assert ("6 * 7" in engine.prompts[0]) is reads and "2+2?" in engine.prompts[0]


def test_a_planned_first_decision_becomes_a_tool_call_carrying_its_plan(monkeypatch):
    model = LlamaCppChatModel(model_path="unused.gguf")
    engine = _FakeEngine()
    model._engine = engine
    replies = iter(['{"action": "calculator", "args": {"expression": "2+2"}, "then": "current_time"}',
                    '{"action": "current_time", "args": {"zone": "UTC"}}'])

    def complete(prompt, **kwargs):
        engine.prompts.append("".join(map(chr, prompt)))
        engine.warm(prompt[: kwargs["keep"]])
        yield next(replies), None
        yield "", {"usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}

    monkeypatch.setattr(model, "_complete", complete)
    bound = model.bind_tools([calculator, current_time], tool_plan=True)
    first = bound.invoke([SystemMessage("sys"), HumanMessage("2+2, then the time?")])
    assert first.tool_calls[0]["args"] == {"expression": "2+2"}
    assert first.additional_kwargs["plan"] == ["calculator", "current_time"]
    assert PLAN_NOTE in engine.prompts[0]
    # A forced next step narrows the grammar, not the prompt: the later-round prompt is kept.
    result = ToolMessage("4", tool_call_id=first.tool_calls[0]["id"])
    later = [SystemMessage("sys"), HumanMessage("2+2, then the time?"), first, result]
    second = model.bind_tools([calculator, current_time], tool_plan=True, tool_choice="current_time").invoke(later)
    assert second.tool_calls[0]["name"] == "current_time" and "plan" not in second.additional_kwargs
    assert PLAN_NOTE not in engine.prompts[1] and "- calculator(" in engine.kept[1]
    assert FOLLOW_UP_NOTE in engine.kept[1]
    assert '"then": "current_time"' in engine.prompts[1]


def test_another_step_is_planned_when_the_tools_together_outweigh_the_answer(monkeypatch):
    model = LlamaCppChatModel(model_path="unused.gguf")
    model._engine = _FakeEngine()  # an option's first token is its first letter
    scores, probes = [-50.0] * 128, []

    def complete(prompt, **kwargs):
        probes.append(kwargs["probe"])
        yield '{"action": "search_docs", "args": {"query": "q"}, "then": "answer"}', None
        yield "", {"usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}, "probe": scores}

    @tool
    def search_docs(query: str) -> str:
        """Search the documents."""
        return ""

    @tool
    def unit_convert(value: float, unit: str) -> str:
        """Convert a value."""
        return ""

    monkeypatch.setattr(model, "_complete", complete)
    bound = model.bind_tools([calculator, search_docs, unit_convert], tool_plan=True)
    question = [HumanMessage("a figure, then a sum?")]

    def plan(answer, calc, unit):
        scores[ord("a")], scores[ord("c")], scores[ord("u")] = math.log(answer), math.log(calc), math.log(unit)
        return bound.invoke(question).additional_kwargs["plan"]

    # Greedy wrote "answer" (0.45 beats each tool alone), but the tools together are likelier.
    assert plan(0.45, 0.30, 0.25) == ["search_docs", "calculator"]
    assert plan(0.45, 0.20, 0.35) == ["search_docs", "unit_convert"]
    assert plan(0.60, 0.30, 0.10) == ["search_docs"]
    # The scores are read where the value of "then" starts, and only when a plan is asked for.
    assert probes[0].search('{"action": "search_docs", "args": {"query": "q"}, "then": "')
    assert not probes[0].search('{"action": "search_docs", "args": {"query": "then"')
    model.bind_tools([calculator, search_docs]).invoke(question)
    assert probes[-1] is None
    # Options that start with the same token cannot be told apart: the greedy choice stands.
    scores[ord("a")], scores[ord("c")] = math.log(0.3), math.log(0.7)
    tied = model.bind_tools([calculator, current_time, search_docs], tool_plan=True)
    assert tied.invoke(question).additional_kwargs["plan"] == ["search_docs"]


def test_an_answer_after_tool_results_must_start_like_prose(monkeypatch):
    model = LlamaCppChatModel(model_path="unused.gguf")
    model._engine = _FakeEngine()
    grammars = []

    def complete(prompt, **kwargs):
        grammars.append(kwargs.get("grammar"))
        yield ('{"action": "answer"}' if len(grammars) % 2 else "It is 4."), None
        yield "", {"finish_reason": "stop", "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}

    monkeypatch.setattr(model, "_complete", complete)
    call = {"name": "calculator", "args": {"expression": "2+2"}, "id": "c1", "type": "tool_call"}
    first = [HumanMessage("2+2?")]
    bound = model.bind_tools([calculator])
    assert bound.invoke(first).text == "It is 4." and grammars[1] is None
    later = [*first, AIMessage("", tool_calls=[call]), ToolMessage("4", tool_call_id="c1")]
    assert bound.invoke(later).text == "It is 4." and grammars[3] is _prose_grammar()
    # llama.cpp parsed the grammar; its first character may not open JSON or a tag.
    from llama_cpp import LlamaGrammar
    assert isinstance(_prose_grammar(), LlamaGrammar) and PROSE_GBNF.startswith("root ::= [^{<")


def test_a_leading_system_prompt_is_kept_as_the_fixed_start_of_a_plain_answer(monkeypatch):
    model = LlamaCppChatModel(model_path="unused.gguf")
    model._engine = _FakeEngine()
    kept = []

    def complete(prompt, **kwargs):
        kept.append("".join(map(chr, prompt[: kwargs["keep"]])))
        yield "Hi", None
        yield "", {"finish_reason": "stop", "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}

    monkeypatch.setattr(model, "_complete", complete)
    model.invoke([SystemMessage("You answer customers of a shop."), HumanMessage("Hello")])
    model.invoke([SystemMessage("Hi."), HumanMessage("Hello")])  # too short to be worth keeping
    model.invoke([HumanMessage("Hello")])
    assert kept == ["<system>You answer customers of a shop.|<", "", ""]


class _FakeLlama:
    """What ``_Engine.warm`` uses of ``llama_cpp.Llama``: the evaluated tokens."""

    def __init__(self):
        self.n_tokens, self.input_ids, self.evaluated = 0, [], []

    def reset(self):
        self.n_tokens, self.input_ids = 0, []

    def eval(self, tokens):
        self.evaluated.append(list(tokens))
        self.input_ids, self.n_tokens = list(tokens), len(tokens)


def test_warm_reuses_the_cache_then_a_saved_state_and_computes_only_what_is_new(monkeypatch, tmp_path):
    from shared.models import llamacpp
    from shared.models.prompt_cache import PromptStates

    def restore(llm, tokens, state):
        llm.input_ids, llm.n_tokens = list(tokens), len(tokens)

    monkeypatch.setattr(llamacpp, "_snapshot", lambda llm: bytes(llm.input_ids))
    monkeypatch.setattr(llamacpp, "_restore", restore)
    states = PromptStates(tmp_path / "states", {"model_sha256": "ab" * 32})
    engine = llamacpp._Engine(path=tmp_path, n_ctx=64, llm=_FakeLlama(), render=str, eog=bool, states=states)
    engine.warm([1, 2, 3])
    engine.warm([1, 2, 3])  # already in the KV cache
    engine.warm([4, 5])
    engine.warm([1, 2, 3])  # saved in this process
    assert engine.llm.evaluated == [[1, 2, 3], [4, 5]] and engine.llm.input_ids == [1, 2, 3]
    # A new process (an empty engine) loads the prefix instead of computing it.
    again = llamacpp._Engine(path=tmp_path, n_ctx=64, llm=_FakeLlama(), render=str, eog=bool,
                             states=PromptStates(states.folder, states.identity))
    again.warm([4, 5])
    assert again.llm.evaluated == [] and again.llm.input_ids == [4, 5]


class FakeLlama:
    """What ``_load_engine`` uses of ``llama_cpp.Llama`` once the model is loaded."""

    model, n_batch = None, 512

    def close(self):
        pass


@pytest.fixture
def fake_llama(monkeypatch):
    """Make ``_load_engine`` build its engines on ``llama_class`` (a ``FakeLlama``), starting with none."""
    import llama_cpp

    from shared.models import llamacpp

    def install(llama_class):
        monkeypatch.setattr(llama_cpp, "Llama", llama_class)
        monkeypatch.setattr(llama_cpp, "llama_model_get_vocab", lambda model: None)
        monkeypatch.setattr(llamacpp, "_chat_renderer", lambda llm, path: str)
        monkeypatch.setattr(llamacpp, "_ENGINES", {})

    return install


def test_a_fine_tuned_model_never_shares_an_engine_or_saved_states_with_its_base(fake_llama, tmp_path):
    loaded = []

    class Loaded(FakeLlama):
        def __init__(self, **kwargs):
            loaded.append(kwargs)

    fake_llama(Loaded)
    path = tmp_path / "base.gguf"
    path.write_bytes(b"GGUF")
    base = LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32)
    tuned = LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32, lora_path=str(tmp_path / "a.gguf"),
                              lora_sha256="cd" * 32)
    retrained = tuned.model_copy(update={"lora_sha256": "ef" * 32})
    engines = [model.engine for model in (base, tuned, retrained)]
    assert len({id(engine) for engine in engines}) == 3 and len(loaded) == 3
    assert [kwargs["lora_path"] for kwargs in loaded] == [None, str(tmp_path / "a.gguf"), str(tmp_path / "a.gguf")]
    identities = [engine.states.identity for engine in engines]
    assert "lora_sha256" not in identities[0] and identities[0]["model_sha256"] == "ab" * 32
    assert [identity["lora_sha256"] for identity in identities[1:]] == ["cd" * 32, "ef" * 32]
    assert LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32).engine is engines[0]  # cached
    assert "lora_path" not in base._identifying_params
    assert tuned._identifying_params["lora_sha256"] == "cd" * 32


def test_weights_run_as_stored_get_an_engine_and_saved_states_of_their_own(fake_llama, tmp_path):
    import llama_cpp

    repacked_while_loading = []

    class Loaded(FakeLlama):
        def __init__(self, **kwargs):
            # What llama-cpp-python's Llama reads its model settings from, during its own load.
            repacked_while_loading.append(llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts)

    fake_llama(Loaded)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    repacked = LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32)
    loaded = repacked.engine
    stored = repacked.model_copy(update={"repack": False})  # a copy made after the load does not share it
    engines = [loaded, stored.engine]
    assert engines[0] is not engines[1] and repacked_while_loading == [True, False]
    assert repacked.model_copy(update={"temperature": 0.0}).engine is loaded  # same settings, same engine
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts  # only that one load was changed
    assert "repack" not in engines[0].states.identity  # repacked states saved before the setting stay valid
    assert engines[1].states.identity == {**engines[0].states.identity, "repack": False}
    assert stored._identifying_params["repack"] is False and "repack" not in repacked._identifying_params


def test_loading_in_the_background_shares_its_engine_and_leaves_a_failure_to_the_caller(
        fake_llama, monkeypatch, tmp_path):
    from shared.models import llamacpp

    started, release, loads, damaged = threading.Event(), threading.Event(), [], [True]

    class Loading(FakeLlama):
        """Fails on a damaged file, else blocks until released."""

        def __init__(self, **kwargs):
            loads.append(kwargs)
            if damaged[0]:
                raise ValueError("Failed to load model from file")
            started.set()
            release.wait(10)

    fake_llama(Loading)
    unhandled = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    model = LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32)

    with model.loading_in_background():
        pass
    assert unhandled == [] and model._engine is None  # the failure is not printed by the thread...
    with pytest.raises(RoadmapError, match="llama.cpp could not load .*model.gguf"):
        _ = model.engine  # ...but raised, as one clear line, by the call that needs the model

    damaged[0] = False
    waiting = threading.Thread(target=lambda: model.engine)
    with model.loading_in_background():
        assert started.wait(10)
        waiting.start()  # the first real use waits for the load under way instead of starting another
        release.set()
    waiting.join(10)
    assert len(loads) == 3 and model.engine is llamacpp._ENGINES[(str(path), 8192, "", "", True)]


def test_an_error_raised_while_the_model_loads_in_the_background_is_printed_after_the_load(
        fake_llama, capsys, tmp_path):
    """llama-cpp-python points stdout and stderr at /dev/null while it loads a model; an error the
    command raises meanwhile (damaged fine-tuned embeddings, say) must not print its line before
    the load is over, or the line is lost and the user sees only an exit code."""
    silenced = threading.Event()

    class Silencing(FakeLlama):
        def __init__(self, **kwargs):
            real, sys.stderr = sys.stderr, open(os.devnull, "w")  # as llama-cpp-python's suppress_stdout_stderr
            silenced.set()
            time.sleep(0.2)
            sys.stderr.close()
            sys.stderr = real

    fake_llama(Silencing)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    model = LlamaCppChatModel(model_path=str(path), model_sha256="ab" * 32)

    @entry_point
    def command(argv):
        with model.loading_in_background():
            assert silenced.wait(10)
            raise RoadmapError("the fine-tuned embeddings are damaged; train them again")

    assert command([]) == 2
    assert capsys.readouterr().err == "error: the fine-tuned embeddings are damaged; train them again\n"


# ---- end-to-end on the embedded model -------------------------------------------------


class Order(BaseModel):
    customer: str = Field(max_length=40)
    quantity: int
    city: str = Field(max_length=40)


@pytest.mark.e2e
def test_invoke_reports_usage_and_answers(local_model):
    reply = local_model.invoke("What is 17 times 3? Answer with the number only.")
    assert "51" in reply.content
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 10 and 0 < usage["output_tokens"] < 20
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["finish_reason"] == "stop"


@pytest.mark.e2e
def test_weights_run_as_stored_load_unrepacked_and_answer(local_model):
    stored = local_model.model_copy(update={"repack": False})
    assert stored.engine is not local_model.engine
    assert [model.engine.llm.model_params.use_extra_bufts for model in (local_model, stored)] == [True, False]
    assert "51" in stored.invoke("What is 17 times 3? Answer with the number only.").content


@pytest.mark.e2e
def test_stream_yields_many_tokens_and_respects_max_tokens(local_model):
    chunks = list(local_model.stream("Count from 1 to 50, separated by spaces.", max_tokens=12))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 5
    assert chunks[-1].usage_metadata["output_tokens"] == 12
    assert chunks[-1].response_metadata["finish_reason"] == "length"


@pytest.mark.e2e
def test_stop_sequence_and_seeded_sampling(local_model):
    stopped = local_model.invoke("List the numbers 1 to 10, one per line.", stop=["5"])
    assert "5" not in stopped.content and "4" in stopped.content
    prompt = "Invent a name for a robot."
    hot = [local_model.invoke(prompt, temperature=1.0, seed=7, max_tokens=12).content for _ in range(2)]
    assert hot[0] == hot[1]


@pytest.mark.e2e
def test_structured_output_is_constrained_to_the_schema(local_model):
    order = local_model.with_structured_output(Order).invoke("Kim Minji wants 2 lamps sent to Busan.")
    assert order.quantity == 2 and "Busan" in order.city


@pytest.mark.e2e
def test_forced_tool_call_has_valid_arguments(local_model):
    reply = local_model.bind_tools([calculator, current_time], tool_choice="calculator").invoke(
        "What is 1234 times 5678?"
    )
    assert reply.tool_calls[0]["name"] == "calculator"
    assert "1234" in reply.tool_calls[0]["args"]["expression"]


@pytest.mark.e2e
def test_tool_decision_and_direct_answer(local_model):
    tools = local_model.bind_tools([calculator, current_time])
    timed = tools.invoke("What time is it in Seoul right now?")
    assert timed.tool_calls and timed.tool_calls[0]["name"] == "current_time"
    poem = tools.invoke("Write one short line of poetry about rain.")
    assert not poem.tool_calls and poem.content.strip()


@pytest.mark.e2e
def test_batch_async_and_threads_share_one_model(local_model):
    prompts = ["Say the word red.", "Say the word blue."]
    assert len(local_model.batch(prompts, config={"max_concurrency": 2}, max_tokens=8)) == 2
    assert asyncio.run(local_model.ainvoke("Say yes.", max_tokens=4)).content
    results = []
    threads = [threading.Thread(target=lambda: results.append(local_model.invoke("Say ok.", max_tokens=4)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(r.content for r in results)


@pytest.mark.e2e
def test_input_longer_than_the_context_is_refused_clearly(local_model):
    with pytest.raises(ContextOverflowError, match="context window is 8,192"):
        local_model.invoke("word " * 9000)


@pytest.mark.e2e
def test_token_counting_matches_the_prompt(local_model):
    reply = local_model.invoke([HumanMessage("Hello there")], max_tokens=1)
    counted = local_model.get_num_tokens_from_messages([HumanMessage("Hello there")])
    assert counted == reply.usage_metadata["input_tokens"]
    assert json.loads(json.dumps(reply.usage_metadata))


@pytest.mark.e2e
def test_saved_prompt_states_change_no_answer_in_a_new_process(local_model, tmp_path):
    """Cold (nothing saved), then a new process that loads every fixed start: the same answers."""
    script = (
        "import json, sys\n"
        "from langchain_core.messages import HumanMessage, SystemMessage\n"
        "from shared.models.registry import get_chat_model\n"
        "from shared.tools.toolbox import calculator\n"
        "model = get_chat_model('local', temperature=0.0, max_tokens=24, progress=False)\n"
        "system = SystemMessage('You answer customers of a lamp shop in one short sentence, politely.')\n"
        "answer = model.invoke([system, HumanMessage('Do you sell desk lamps?')])\n"
        "call = model.bind_tools([calculator]).invoke('What is 17% of 89000?')\n"
        "print(json.dumps([answer.text, call.tool_calls[0]['args'] if call.tool_calls else None]))\n"
    )
    env = {**os.environ, "ROADMAP_CACHE": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(Path(local_model.model_path).parent)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
            for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout and json.loads(runs[0].stdout)[1]
    files, size = folder_size(tmp_path / "cache" / "prompt-states")
    assert files == 2 and size > 1_000_000
