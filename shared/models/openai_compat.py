"""ChatOpenAI tuned to work the same on OpenAI and on OpenAI-compatible servers.

Imported only by the ``openai:`` factory in ``shared/models/registry.py``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI


class PortableChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` whose structured output uses a forced tool call by default.

    OpenAI's ``json_schema`` response format is not served by every compatible server
    (llama-cpp-python's server answers it with an error); a forced function call is served
    by OpenAI, vLLM, llama.cpp servers and Ollama alike, and gives the same parsed object.
    """

    def with_structured_output(
        self, schema: Any = None, *, method: str = "function_calling", **kwargs: Any
    ) -> Runnable:
        return super().with_structured_output(schema, method=method, **kwargs)
