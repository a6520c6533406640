"""Reusable LCEL chains built from the shared prompts.

Example:
    >>> from shared.models.registry import get_chat_model
    >>> chain = task_chain(get_chat_model("fake"), "classify")
    >>> chain.invoke(TASKS["classify"].inputs("Where is my parcel?"))
    'unknown'
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from shared.tasks.task_prompts import TASKS, Task, get_task

__all__ = ["TASKS", "task_chain"]


def task_chain(model: BaseChatModel | Runnable, task: str | Task) -> Runnable:
    """Return ``prompt | model | parser`` for one of the step 1 tasks, at the task's temperature.

    Args:
        model: Any chat model (or a model wrapped with ``with_retry``).
        task: A task name (``analyze``, ``extract``, ``classify``, ``answer``, ``write``) or a ``Task``.

    Returns:
        A runnable taking the task's inputs (``task.inputs(text)``) and returning the parsed reply.

    Raises:
        RoadmapError: Unknown task name.
    """
    task = get_task(task) if isinstance(task, str) else task
    return task.prompt | model.bind(temperature=task.temperature) | task.parser
