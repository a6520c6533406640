"""`roadmap doctor`: models, files and versions checked, with how to fix each problem."""

from __future__ import annotations

import os
import sys

from shared.core.commands import print_json
from shared.core.errors import RoadmapError

PACKAGES = (
    "langchain", "langchain-core", "langgraph", "langchain-openai", "langchain-community",
    "llama-cpp-python", "torch", "tokenizers", "safetensors", "sentence-transformers", "faiss-cpu",
)


def doctor_report(model_spec: str | None, embeddings_spec: str | None) -> dict:
    """Collect what ``roadmap doctor`` shows: model choice, files, versions, problems and fixes."""
    # Imported here, not at the top: importlib.metadata alone would double `roadmap --help`'s start-up.
    from importlib import metadata

    from shared.core.settings import PROMPT_CACHE_ENV, REPACK_ENV, cache_dir, llama_repack, prompt_cache_bytes
    from shared.models.gguf_files import QWEN_0_5B, QWEN_1_5B, chunk_files, is_verified
    from shared.models.prompt_cache import folder_size
    from shared.models.registry import EMBEDDINGS_ENV, FINE_TUNED, choose

    problems: list[str] = []
    choice = choose(model_spec)
    embeddings = choose(embeddings_spec, EMBEDDINGS_ENV)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
            problems.append(f"{name} is missing: pip install -e .")
    models = {}
    for label, source in (("local", QWEN_1_5B), ("local-small", QWEN_0_5B)):
        path = cache_dir() / "models" / source.filename
        try:
            chunk_files(source)
            packages = "installed"
        except RoadmapError as exc:
            packages = str(exc)
        models[label] = {"file": str(path), "verified": is_verified(source, path), "packages": packages}
    embedded = choice.family in ("local", "local-small")
    fine_tuned = embedded and choice.argument.startswith(FINE_TUNED)
    if embedded and (not choice.argument or fine_tuned):
        status = models[choice.family]
        if status["packages"] != "installed" and not status["verified"]:
            problems.append(status["packages"])
    if fine_tuned:
        from shared.finetune.artifacts import adapter_file

        base = QWEN_0_5B if choice.family == "local-small" else QWEN_1_5B
        try:
            adapter_file(choice.argument.removeprefix(FINE_TUNED), base.sha256)
        except RoadmapError as exc:
            problems.append(str(exc))
    states = cache_dir() / "prompt-states"
    files, size = folder_size(states)
    try:
        cap = prompt_cache_bytes()
    except RoadmapError as exc:
        cap = None
        problems.append(str(exc))
    prompt_states = {"folder": str(states), "files": files, "bytes": size, "cap_bytes": cap,
                     "setting": PROMPT_CACHE_ENV}
    try:
        repack = llama_repack()
    except RoadmapError as exc:
        repack = None
        problems.append(str(exc))
    if choice.family == "openai" and not os.environ.get("OPENAI_API_KEY"):
        problems.append("OPENAI_API_KEY is not set: export it (any value for a local OpenAI-compatible server)")
    return {
        "python": sys.version.split()[0],
        "model": {"spec": choice.spec, "source": choice.source},
        "embeddings": {"spec": embeddings.spec, "source": embeddings.source},
        "openai_base_url": os.environ.get("OPENAI_BASE_URL"),
        "cache": str(cache_dir()),
        "model_files": models,
        "prompt_states": prompt_states,
        "llama_weights": {"repacked": repack, "setting": REPACK_ENV},
        "versions": versions,
        "problems": problems,
    }


def cmd_doctor(args) -> int:
    report = doctor_report(args.model, args.embeddings)
    if args.json:
        print_json(report)
        return 1 if report["problems"] else 0
    print(f"python        {report['python']}")
    print(f"chat model    {report['model']['spec']}  (from {report['model']['source']})")
    print(f"embeddings    {report['embeddings']['spec']}  (from {report['embeddings']['source']})")
    if report["openai_base_url"]:
        print(f"openai server {report['openai_base_url']}")
    print(f"cache         {report['cache']}")
    for label, status in report["model_files"].items():
        state = "verified" if status["verified"] else (
            "not assembled yet (done on first use)" if status["packages"] == "installed" else "packages missing"
        )
        print(f"{label:<13} {state}: {status['file']}")
    states = report["prompt_states"]
    cap = {0: "off", None: "?"}.get(states["cap_bytes"]) or f"{states['cap_bytes'] >> 20} MB"
    print(f"prompt states {states['files']} saved, {states['bytes'] / 2**20:.0f} MB of {cap} ({states['setting']}); "
          f"delete {states['folder']} to clear")
    weights = {True: "repacked for the CPU at load time", False: "run as stored in the file", None: "?"}[
        report["llama_weights"]["repacked"]]
    print(f"llama weights {weights} ({report['llama_weights']['setting']})")
    for name, version in report["versions"].items():
        print(f"  {name:<22} {version or 'MISSING'}")
    if report["problems"]:
        print("\nproblems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
        return 1
    print("\nall good")
    return 0

