"""A LangChain chat model that runs a GGUF file in-process through llama.cpp.

Why our own class instead of langchain-community's ``ChatLlamaCpp``: that package is being
sunset, and its tool calling does not work with small Qwen models. Here every structured
answer is produced with llama.cpp's JSON-schema grammars, so even a 1.5B model returns valid
JSON and valid tool calls:

* ``with_structured_output(Model)`` constrains decoding to the model's JSON schema;
* ``bind_tools([...])`` first lets the model *decide* under a grammar that only admits
  ``{"action": "<tool>", "args": {...}}`` for the bound tools or ``{"action": "answer"}``
  (the protocol, with its few-shot examples and plans, is ``shared/models/tool_protocol.py``);
  a tool decision becomes a real ``AIMessage.tool_calls`` entry, an ``answer`` decision is
  followed by a normal, streamed answer.

The llama.cpp model is loaded once per process (per file, context size, LoRA adapter, and
weights repacked or as stored) and guarded by a lock, so several threads can share one chat
model safely: their requests queue.
The computed state of a prompt's fixed start (the tool prompt of a decision, the system prompt
of a step) is kept, in memory and in the cache folder (``shared/models/prompt_cache.py``), so
neither a later call nor a new process evaluates it again.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import ctypes
import io
import itertools
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from shared.core.errors import RoadmapError
from shared.core.settings import cache_dir, prompt_cache_bytes
from shared.models.chat_base import JsonSchemaChatModel
from shared.models.prompt_cache import PromptStates
from shared.models.tool_protocol import (
    ANSWER_ACTION,
    THEN_VALUE,
    TOOL_OPTIONS,
    decision_request,
    has_tool_results,
    next_step,
    read_decision,
)

DECISION_MAX_TOKENS = 256
# A shorter fixed start costs less to evaluate again than to save and load.
MIN_KEPT_PREFIX = 16


class ContextOverflowError(RoadmapError):
    """The prompt does not fit in the model's context window."""


def _snapshot(llm: Any) -> bytes:
    """llama.cpp's state (the KV cache of the tokens evaluated so far), without the Python-side
    score matrix that ``Llama.save_state`` copies too (hundreds of MB for nothing here)."""
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llm.ctx)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(llm.ctx, buffer, size)
    return bytes(memoryview(buffer)[:written])


def _restore(llm: Any, tokens: Sequence[int], state: bytes) -> None:
    """Load a state from ``_snapshot``: llama.cpp then holds ``tokens`` evaluated, as if just computed.

    ``Llama.load_state`` would also rewrite the Python-side score matrix (``n_batch`` x vocabulary
    floats, about 300 MB, touched for the first time in a new process: a quarter of a second);
    the scores are not needed, since the next call always evaluates at least one more token.
    """
    import llama_cpp

    llm.reset()  # n_tokens 0, and the next generation must evaluate before it samples
    size = len(state)
    if llama_cpp.llama_state_set_data(llm.ctx, (ctypes.c_uint8 * size).from_buffer_copy(state), size) != size:
        raise RuntimeError("llama.cpp refused a saved prompt state")
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)


@dataclass
class _Engine:
    """One loaded llama.cpp model, its chat template, its saved prompt states, and the lock that
    serialises it."""

    path: Path
    n_ctx: int
    llm: Any
    render: Callable[[list[dict[str, Any]]], str]
    eog: Callable[[int], bool]
    states: PromptStates
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def logits(self) -> Any:
        """A copy of the raw next-token scores the last token was sampled from (before the
        grammar), as a numpy array indexed by token id."""
        import llama_cpp
        import numpy as np

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.llm.ctx), shape=(self.llm.n_vocab(),)).copy()

    def warm(self, prefix: list[int]) -> None:
        """Make the KV cache hold ``prefix``, restoring a saved state instead of recomputing it.

        Call with ``lock`` held. llama.cpp already skips the part of a prompt that matches the
        cache, but the cache holds one sequence: an answer in between evicts the tool prompt,
        and a new process starts empty. A prefix computed here is saved (``PromptStates``), so
        later calls and later processes start from it. Computed or restored, the prefix is
        evaluated apart from the rest of the prompt, so the answer is the same either way.
        """
        llm, key = self.llm, tuple(prefix)
        if llm.n_tokens >= len(prefix) and tuple(llm.input_ids[: len(prefix)]) == key:
            return
        state = self.states.lookup(key)
        if state is not None:
            _restore(llm, key, state)
            return
        llm.reset()
        llm.eval(prefix)
        self.states.keep(key, _snapshot(llm))


_ENGINES: dict[tuple[str, int, str, str, bool], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _state_identity(path: Path, model_sha256: str, lora_path: str, lora_sha256: str) -> dict[str, Any]:
    """The model part of the saved prompt states' identity: the model file's, plus the adapter's if any."""
    stat = path.stat()
    model = {"model_sha256": model_sha256} if model_sha256 else {
        "model_file": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if not lora_path:
        return model  # the same identity as before adapters existed: saved states stay valid
    if lora_sha256:
        return {**model, "lora_sha256": lora_sha256}
    lora = Path(lora_path).stat()
    return {**model, "lora_file": str(Path(lora_path).resolve()), "lora_size": lora.st_size,
            "lora_mtime_ns": lora.st_mtime_ns}


@contextlib.contextmanager
def repacked_weights(repack: bool) -> Iterator[None]:
    """Make a ``Llama`` built inside this block repack its weights (llama.cpp's default) or keep
    them as stored in the GGUF file (``repack=False``).

    llama.cpp repacks quantized weights at load time for its CPU kernels (``use_extra_bufts``);
    llama-cpp-python takes no argument for it, so its default model parameters are wrapped for
    this one load. Hold a lock meanwhile (``_load_engine`` holds ``_ENGINES_LOCK``): a load in
    another thread would see the wrapped defaults too.
    """
    if repack:
        yield
        return
    import llama_cpp.llama as module

    defaults = module.llama_cpp.llama_model_default_params

    def as_stored() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    module.llama_cpp.llama_model_default_params = as_stored
    try:
        yield
    finally:
        module.llama_cpp.llama_model_default_params = defaults


def _load_engine(
    path: Path, n_ctx: int, n_threads: int | None, model_sha256: str, lora_path: str = "", lora_sha256: str = "",
    repack: bool = True,
) -> _Engine:
    # Note: an adapter changes every computed state, so a base model and each of its fine-tuned
    # versions get an engine (and saved prompt states) of their own; so do repacked and stored weights.
    key = (str(path), n_ctx, lora_path, lora_sha256, repack)
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        try:
            import llama_cpp
            from llama_cpp import Llama
        except ImportError:
            raise RoadmapError(
                "llama-cpp-python is not installed; install the project with: pip install -e ."
            ) from None
        try:
            # Note: with an adapter, llama.cpp logs a line per weight it cannot repack (a notice,
            # not an error); its log goes through Python's stderr, muted here as for a vocabulary.
            with (contextlib.redirect_stderr(io.StringIO()) if lora_path else contextlib.nullcontext(),
                  repacked_weights(repack)):
                llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads or os.cpu_count(),
                    lora_path=lora_path or None,
                    verbose=False,
                )
        except ValueError as exc:
            raise RoadmapError(f"llama.cpp could not load {path}: {exc}; is it a complete GGUF file?") from None
        except RuntimeError as exc:  # what llama-cpp-python raises for an adapter it cannot apply
            if not lora_path:
                raise
            raise RoadmapError(f"llama.cpp could not apply the LoRA adapter {lora_path} to {path.name} ({exc}); "
                               "train the adapter again on this base model") from None
        # Note: free the model before the interpreter tears its modules down; left to the
        # garbage collector at exit, llama-cpp-python prints an ignored TypeError.
        atexit.register(llm.close)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        # A saved state fits only the same model bytes (and adapter bytes), llama.cpp build and
        # context settings. A file without a known hash (local:PATH) is told apart by its path,
        # size and mtime.
        # Weights run as stored compute slightly different states than repacked ones.
        identity = {**_state_identity(path, model_sha256, lora_path, lora_sha256),
                    "llama_cpp": llama_cpp.__version__, "n_ctx": n_ctx, "n_batch": llm.n_batch,
                    **({} if repack else {"repack": False})}
        engine = _Engine(
            path=path,
            n_ctx=n_ctx,
            llm=llm,
            render=_chat_renderer(llm, path),
            eog=lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)),
            states=PromptStates(cache_dir() / "prompt-states", identity, prompt_cache_bytes()),
        )
        _ENGINES[key] = engine
        return engine


def _chat_renderer(llm: Any, path: Path, generation_prompt: bool = True) -> Callable[[list[dict[str, Any]]], str]:
    """The model's own chat template (from the GGUF metadata) as messages -> prompt text.

    ``generation_prompt`` ends the text with the opening of an assistant turn (for generating).
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise RoadmapError(f"{path.name} has no chat template in its metadata; use an instruct/chat GGUF")

    def token_text(token_id: int) -> str:
        return llm.detokenize([token_id], special=True).decode("utf-8", "ignore") if token_id >= 0 else ""

    formatter = Jinja2ChatFormatter(
        template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos()),
        add_generation_prompt=generation_prompt,
    )
    return lambda messages: formatter(messages=messages).prompt


def chat_token_counter(path: Path) -> Callable[[list[dict[str, Any]]], int]:
    """Count the tokens of a chat as the GGUF model at ``path`` sees it, chat template included.

    Only the vocabulary is loaded (a fraction of a second, almost no memory), so fine-tuning
    data can be measured with the target model's own tokenizer without loading its weights.

    Args:
        path: A GGUF chat model file.

    Returns:
        A function from chat messages (``[{"role": ..., "content": ...}, ...]``) to a token count.

    Raises:
        RoadmapError: llama-cpp-python is missing, or the file has no vocabulary or chat template.

    Example:
        >>> count = chat_token_counter(Path("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))  # doctest: +SKIP
        >>> count([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}])  # doctest: +SKIP
        34
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        raise RoadmapError("llama-cpp-python is not installed; install the project with: pip install -e .") from None
    try:
        # Note: llama.cpp still sets up a small context and logs, as an error, that a
        # vocabulary has no training context; the log goes through Python's stderr, muted here.
        with contextlib.redirect_stderr(io.StringIO()):
            llm = Llama(model_path=str(path), vocab_only=True, n_ctx=64, n_batch=64, verbose=False)
    except ValueError as exc:
        raise RoadmapError(f"llama.cpp could not read the vocabulary of {path}: {exc}") from None
    atexit.register(llm.close)
    # A training example ends with the assistant's turn: no generation prompt after it.
    render = _chat_renderer(llm, path, generation_prompt=False)
    return lambda messages: len(llm.tokenize(render(messages).encode("utf-8"), add_bos=False, special=True))


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


# An answer that starts like prose: not with "{", "[" or "<" (nor a blank). After reading tool
# results a small model tends to write one more tool call, in the chat template's format, as
# its answer; the 0.5B model did so after every tool result before this grammar.
PROSE_GBNF = r"root ::= [^{<\[ \t\n] [^\x00]*"


@lru_cache(maxsize=1)
def _prose_grammar() -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(PROSE_GBNF, verbose=False)


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a beginning of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


# Content blocks a text-only model cannot read; left out silently, the answer would ignore them.
MEDIA_BLOCKS = frozenset({"image", "audio", "video", "file"})


def to_chat_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> the dicts a Hugging Face chat template expects."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}.get(message.type)
        if role is None:
            raise RoadmapError(f"the local model cannot take a message of type {message.type!r}")
        media = sorted({block["type"] for block in message.content_blocks} & MEDIA_BLOCKS)
        if media:
            raise RoadmapError(
                f"the local model reads text only, and a message holds {' and '.join(media)} content; "
                "send its text (or a description), or use a multimodal model with --model openai:MODEL"
            )
        item: dict[str, Any] = {"role": role, "content": message.text}
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [
                {"type": "function", "id": call.get("id"),
                 "function": {"name": call["name"], "arguments": call["args"]}}
                for call in message.tool_calls
            ]
        out.append(item)
    return out


class LlamaCppChatModel(JsonSchemaChatModel):
    """Chat model backed by an in-process llama.cpp GGUF model.

    Args:
        model_path: Path of the GGUF file.
        n_ctx: Context window in tokens.
        temperature: Sampling temperature (0 = greedy).
        max_tokens: Upper bound on generated tokens per call.
        seed: Sampling seed, for repeatable runs.
        stop: Default stop sequences.
        model_name: The name reported in the reply's metadata and to tracing; default: the file name.
        model_sha256: The file's SHA-256 when known (the embedded models'), which keys its saved
            prompt states; without it they are keyed by the file's path, size and mtime.
        lora_path: A llama.cpp LoRA adapter file to apply to the model (``local:ft/NAME``), or ''.
        lora_sha256: The adapter's SHA-256 when known, which keys the engine and its saved prompt
            states apart from the base model's; without it, its path, size and mtime do.
        reads_tool_examples: False for an adapter trained to decide without few-shot turns: the
            ``tool_examples`` given to ``bind_tools`` are then left out of its prompt.
        repack: Whether llama.cpp repacks the weights for its CPU kernels when it loads them (the
            default), or runs them as stored: on the project's machine that evaluates prompts
            about 1.5 times as fast and decodes about 0.8 times as fast, with slightly different
            answers (``ROADMAP_LLAMA_REPACK``, docs/models.md).

    ``bind_tools`` also takes ``tool_examples`` (few-shot decisions) and ``tool_plan`` (a first
    tool call says what follows it), the options of ``shared/models/tool_protocol.py``.

    Example:
        >>> model = LlamaCppChatModel(model_path="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", temperature=0)
        >>> model.invoke("What is 2 + 2? Answer with the number.").content  # doctest: +SKIP
        '4'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    tool_options: ClassVar[frozenset[str]] = TOOL_OPTIONS
    provider: ClassVar[str] = "llamacpp"

    model_path: str
    n_ctx: int = 8192
    n_threads: int | None = None
    temperature: float = 0.3
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 42
    stop: list[str] | None = None
    model_name: str = Field(default="")
    model_sha256: str = ""
    lora_path: str = ""
    lora_sha256: str = ""
    reads_tool_examples: bool = True
    repack: bool = True

    _engine: _Engine | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _name_after_the_file(self) -> LlamaCppChatModel:
        # The reply's metadata and tracing always name the model: by default, its file name.
        self.model_name = self.model_name or Path(self.model_path).name
        return self

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-roadmap"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        adapter = {"lora_path": self.lora_path, "lora_sha256": self.lora_sha256} if self.lora_path else {}
        stored = {} if self.repack else {"repack": False}
        return {"model_path": self.model_path, **adapter, **stored, "n_ctx": self.n_ctx,
                "temperature": self.temperature}

    @property
    def engine(self) -> _Engine:
        """The shared llama.cpp engine, loaded on first use."""
        if self._engine is None:
            self._engine = _load_engine(Path(self.model_path), self.n_ctx, self.n_threads, self.model_sha256,
                                        self.lora_path, self.lora_sha256, self.repack)
        return self._engine

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> LlamaCppChatModel:
        """A copy with ``update`` applied; a changed setting (file, adapter, context, weights) may need
        another engine, so the copy looks its engine up again on first use instead of sharing ours."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._engine = None
        return copy

    @contextlib.contextmanager
    def loading_in_background(self) -> Iterator[None]:
        """Load the engine in a background thread while the block runs, so other start-up work overlaps it.

        ``roadmap ask`` loads the weights while MiniLM embeds the question. The first call that
        needs the engine waits for this load; if it fails, that call fails again, with its one
        clear line, instead of the thread printing a traceback. The block is left only once the
        load is over: llama-cpp-python points the whole process's stdout and stderr at
        ``/dev/null`` while it loads, so an error raised in the block meanwhile would be printed
        into nothing.
        """
        def load() -> None:
            with contextlib.suppress(Exception):
                _ = self.engine

        thread = threading.Thread(target=load, name="llama-load", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join()

    # -- token counting (used to trim long inputs and histories) ---------------------
    def get_num_tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        return len(self.engine.tokenize(self.engine.render(to_chat_dicts(messages))))

    # -- the generation core -----------------------------------------------------------
    def _prompt_tokens(self, messages: Sequence[BaseMessage], budget: int) -> list[int]:
        engine = self.engine
        tokens = engine.tokenize(engine.render(to_chat_dicts(messages)))
        if len(tokens) + budget > engine.n_ctx:
            raise ContextOverflowError(
                f"the input is {len(tokens):,} tokens, but the model's context window is {engine.n_ctx:,} "
                f"with {budget:,} kept for the answer; shorten the input"
            )
        return tokens

    def _head_length(self, head: Sequence[BaseMessage], prompt: list[int]) -> int:
        """How many first tokens of ``prompt`` are the rendered ``head`` messages (a fixed start)."""
        head_tokens = self.engine.tokenize(self.engine.render(to_chat_dicts(head)))
        return next((i for i, (a, b) in enumerate(zip(prompt, head_tokens)) if a != b), len(head_tokens))

    def _complete(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        stop: list[str] | None,
        grammar: Any = None,
        temperature: float | None = None,
        seed: int | None = None,
        keep: int = 0,
        probe: re.Pattern[str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Yield ``(text, None)`` pieces as tokens arrive, then ``("", stats)`` once done.

        ``keep``: the length of a prompt prefix worth keeping computed across calls (see
        ``_Engine.warm``). ``probe``: once the text so far matches it, the scores the next
        token is chosen from are kept, as ``stats["probe"]``.

        The loop runs over llama.cpp's token generator directly, so the token counts are exact
        and text is decoded incrementally (a multi-byte character split across tokens is held
        back until complete, and so is text that might be the start of a stop sequence).
        """
        engine = self.engine
        stops = [s for s in (stop or []) if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        held, text, probed, produced, finish = "", "", None, 0, "length"
        with engine.lock:
            if keep:
                engine.warm(prompt[:keep])
            engine.llm.set_seed(self.seed if seed is None else seed)
            tokens = engine.llm.generate(
                prompt,
                temp=self.temperature if temperature is None else temperature,
                top_p=self.top_p,
                grammar=grammar,
            )
            for token in tokens:
                if probe is not None and probed is None and probe.search(text):
                    probed = engine.logits()
                if engine.eog(token):
                    finish = "stop"
                    break
                produced += 1
                piece = decoder.decode(engine.llm.detokenize([token]))
                held, text = held + piece, text + piece
                hit = min((held.find(s) for s in stops if s in held), default=-1)
                if hit >= 0:
                    held, finish = held[:hit], "stop"
                    break
                keep = max((_overlap(held, s) for s in stops), default=0)
                if len(held) > keep:
                    yield held[: len(held) - keep], None
                    held = held[len(held) - keep :]
                if produced >= max_tokens:
                    break
            tokens.close()
        tail = held + decoder.decode(b"", final=True)
        if tail:
            yield tail, None
        yield "", {
            "finish_reason": finish,
            "usage": {"input_tokens": len(prompt), "output_tokens": produced, "total_tokens": len(prompt) + produced},
            **({"probe": probed} if probe is not None else {}),
        }

    def _decide(
        self,
        messages: Sequence[BaseMessage],
        tools: list[dict[str, Any]],
        tool_choice: Any,
        examples: Sequence[dict[str, Any]] = (),
        plan: bool = False,
    ) -> dict:
        """Run the grammar-constrained decision (``shared/models/tool_protocol.py``); return the
        decision (``read_decision``) and its token usage.

        ``examples``: few-shot decisions; ``plan``: a first tool call says what follows it
        (``"plan"``), the step after it weighed by ``next_step`` from the scores where
        ``"then"`` starts.
        """
        if tool_choice == "none":
            return {"decision": {"action": ANSWER_ACTION}, "usage": None}
        request = decision_request(messages, tools, tool_choice, examples, plan)
        prompt = self._prompt_tokens([*request.head, *request.conversation], DECISION_MAX_TOKENS)
        # The system prompt, tool descriptions and examples are the same for every question
        # (one version for first rounds, one for later rounds): their computed state is kept
        # (``_Engine.warm``), so a decision only pays for the conversation.
        shared = self._head_length(request.head, prompt)
        text, stats = "", {}
        for piece, info in self._complete(
            prompt,
            max_tokens=DECISION_MAX_TOKENS,
            stop=None,
            grammar=_grammar(json.dumps(request.schema)),
            temperature=0.0,
            keep=shared,
            probe=THEN_VALUE if request.plan else None,
        ):
            text += piece
            stats = info or stats
        scores = stats.get("probe")

        def likeliest(options: list[str]) -> str:
            return next_step(scores, [self.engine.tokenize(option)[0] for option in options], options)

        decision = read_decision(text, request.names, likeliest if scores is not None else None)
        return {"decision": decision, "usage": stats["usage"]}

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        max_tokens = kwargs.get("max_tokens") or self.max_tokens
        stop = stop or kwargs.get("stop") or self.stop
        decision_usage = None
        tools = kwargs.get("tools")
        if tools:
            outcome = self._decide(
                messages, tools, kwargs.get("tool_choice"),
                (kwargs.get("tool_examples") or ()) if self.reads_tool_examples else (),
                bool(kwargs.get("tool_plan")),
            )
            decision, decision_usage = outcome["decision"], outcome["usage"]
            if decision.get("action") != ANSWER_ACTION:
                call_id = f"call_{uuid.uuid4().hex[:12]}"
                args = decision.get("args") or {}
                chunk = AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": decision["action"], "args": json.dumps(args), "id": call_id, "index": 0}
                    ],
                    usage_metadata=decision_usage,
                    additional_kwargs={"plan": decision["plan"]} if "plan" in decision else {},
                    response_metadata={"finish_reason": "tool_calls", "model_name": self.model_name},
                )
                yield ChatGenerationChunk(message=chunk)
                return
        response_format = kwargs.get("response_format")
        grammar = _grammar(json.dumps(response_format["schema"])) if response_format else None
        if grammar is None and tools and has_tool_results(messages):
            grammar = _prose_grammar()
        prompt = self._prompt_tokens(messages, max_tokens)
        # A leading system prompt is the fixed start of a step's calls: its state is kept too.
        system = list(itertools.takewhile(lambda message: message.type == "system", messages))
        keep = self._head_length(system, prompt) if system else 0
        for piece, stats in self._complete(
            prompt,
            max_tokens=max_tokens,
            stop=stop,
            grammar=grammar,
            temperature=kwargs.get("temperature"),
            seed=kwargs.get("seed"),
            keep=keep if keep >= MIN_KEPT_PREFIX else 0,
        ):
            if stats is None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
                continue
            usage = stats["usage"]
            if decision_usage:
                usage = {k: usage[k] + decision_usage[k] for k in usage}
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata=usage,
                    response_metadata={"finish_reason": stats["finish_reason"], "model_name": self.model_name},
                    chunk_position="last",
                )
            )
