"""Step 1 - a simple LLM app: prompt + LLM.

Builds ``prompt | model | parser`` chains for the three things LLMs do well without any
training: NLP (analysis, extraction, classification), answering questions, creative writing.
New since step 0: everything - a chat model, a prompt template, an output parser, streaming.

Run it:  roadmap run 1   (or: python -m steps.step01_prompt --task classify --input "...")
"""

from __future__ import annotations

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable

from shared.core.commands import (
    MAX_ANSWER_TOKENS,
    ArgumentParser,
    add_model_options,
    entry_point,
    int_in,
    print_json,
)
from shared.core.console import Meter, StreamPrinter
from shared.core.errors import RoadmapError
from shared.models.registry import get_chat_model
from shared.tasks.task_prompts import TASKS, get_task


def build_chain(model: BaseChatModel, task: str = "classify") -> Runnable:
    """Return the step 1 chain for one task: prompt -> model -> parser."""
    spec = get_task(task)  # the prompt, parser and temperature of one task (shared/tasks/task_prompts.py)
    # The whole lesson is this one line of LCEL. The prompt template turns the input dict
    # into chat messages, the model answers with a message, the parser turns that message
    # into the value we want (a string, a label, a dict).
    # Note: `bind` fixes call options for this chain only - here the task's temperature
    # (0 for extraction and classification, higher for creative writing).
    return spec.prompt | model.bind(temperature=spec.temperature) | spec.parser  # New: prompt | model | parser


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 1",
        description="Step 1: prompt + LLM. Runs the five tasks LLMs do well, streaming the model's "
        "answer, then shows the parsed result, the tokens used and the time taken.",
    )
    parser.add_argument("--task", choices=["all", *TASKS], default="all", help="which task to run (default: all)")
    parser.add_argument("--input", help="your own text for the task (needs --task)")
    parser.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=256,
                        help="longest answer in tokens (default: 256)")
    parser.add_argument("--show-prompt", action="store_true", help="print the messages the model receives")
    add_model_options(parser)
    args = parser.parse_args(argv)
    if args.input is not None and args.task == "all":
        raise RoadmapError("--input needs a single --task (one of: " + ", ".join(TASKS) + ")")
    return args


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(TASKS) if args.task == "all" else [args.task]
    # Check every input before loading a model: a mistake should cost nothing.
    inputs = {name: TASKS[name].inputs(TASKS[name].example if args.input is None else args.input) for name in names}
    model = get_chat_model(args.model, max_tokens=args.max_tokens)  # New: a chat model, picked by its spec

    results = []
    for name in names:
        task = TASKS[name]
        chain = build_chain(model, name)
        meter = Meter()
        # Callbacks watch a run without changing it: the printer shows tokens as they are
        # generated, the meter adds up the tokens the model reports.
        callbacks = meter.callbacks if args.json else [*meter.callbacks, StreamPrinter()]  # New: streaming
        if not args.json:
            print(f"\n== {task.capability} ({name}) ==")
            print(f"input: {inputs[name]['text']}")
            if args.show_prompt:
                for message in task.prompt.format_messages(**inputs[name]):
                    print(f"[{message.type}] {message.text}")
            print("model: ", end="", flush=True)
        # Note: a parser can fail - a model asked for JSON may still answer in prose.
        # Step 2 shows structured output, which makes that impossible.
        try:
            output, error = chain.invoke(inputs[name], config={"callbacks": callbacks}), None  # New: run the chain
        except OutputParserException as exc:
            output, error = None, f"the reply could not be parsed: {str(exc).splitlines()[0]}"
        results.append(
            {"task": name, "capability": task.capability, "input": inputs[name]["text"], "output": output,
             "error": error, "usage": meter.tokens(), "seconds": meter.seconds()}
        )
        if not args.json:
            print()
            # The parser's work is visible for extraction (text -> dict) and classification
            # (text -> one allowed label); for the other tasks it passes the text through.
            if error or not isinstance(task.parser, StrOutputParser):
                print(error or f"parsed: {output!r}")
            print(f"[{meter.summary()}]")

    if args.json:
        print_json({"step": 1, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
