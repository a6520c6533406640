"""LangChain's own standard tests (langchain-tests) on our chat models.

``ChatModelUnitTests`` build the models without loading anything. ``ChatModelIntegrationTests``
run on the scripted fake (quick: they check the contract of structured output, streaming and
usage without a model) and on the embedded 1.5B model (e2e: one loaded model for every test).
Each capability flag says what the model really does; a test skipped by a flag says why here.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from shared.models.fake import ScriptedChatModel
from shared.models.llamacpp import LlamaCppChatModel


class TextOnly:
    """The capability flags shared by our models: text in and out, nothing else."""

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        # method="json_mode": with a schema the reply follows it, without one it is any JSON object.
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        # Text and tool_use blocks are read as text and tool calls; "thinking" blocks are left out.
        return True

    @property
    def supports_image_inputs(self) -> bool:
        # Skips test_image_inputs: the models read text only (an image is refused with a clear error).
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        # Skips test_image_tool_message: text only.
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        # Skips test_pdf_inputs: text only (step 3 reads PDFs into text before they reach a model).
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        # Skips test_pdf_tool_message: text only.
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        # Skips test_audio_inputs: text only.
        return False

    @property
    def supports_video_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        # Skips the four *_with_model_override tests: one instance serves one model file; another
        # model is another instance (the registry's spec), not a `model=` argument per call.
        return False

    @property
    def enable_vcr_tests(self) -> bool:
        # Skips test_stream_time: VCR replays recorded HTTP, and these models make no HTTP calls.
        return False

    # Not serializable with langchain_core.load (test_serdes skips): nothing is deserialized into
    # arbitrary types here. No settings come from the environment (test_init_from_env skips):
    # the registry reads ROADMAP_MODEL, the models take arguments only.


class TestLlamaCppChatModelUnit(TextOnly, ChatModelUnitTests):
    """Construction, bound tools and structured output of the local model; nothing is loaded."""

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model_path": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"}


class TestScriptedChatModelUnit(TextOnly, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ScriptedChatModel]:
        return ScriptedChatModel


class TestScriptedChatModelStandard(TextOnly, ChatModelIntegrationTests):
    """The standard behaviour tests on the fake: it echoes, streams, reports usage and fills any
    schema with an example, so the contract of every chain's structured output is checked here
    without a model."""

    @property
    def chat_model_class(self) -> type[ScriptedChatModel]:
        return ScriptedChatModel

    @property
    def has_tool_calling(self) -> bool:
        # Skips the tool-calling tests: the fake calls a tool only when a test scripts the call,
        # and these tests measure whether a model chooses the call itself.
        return False


@pytest.mark.e2e
class TestLlamaCppChatModelStandard(TextOnly, ChatModelIntegrationTests):
    """The standard behaviour tests on the embedded model, greedy and with short replies."""

    @pytest.fixture(autouse=True)
    def embedded_model_file(self, local_model):
        # The tests build their own models from chat_model_params; pointing them at the session's
        # model file makes them share its one loaded engine (one per file and context size).
        self.model_file = local_model.model_path

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model_path": self.model_file, "temperature": 0.0, "max_tokens": 48}

