"""Fine-tuning data: chat-format examples and (question, passage) pairs, deduplicated and split.

Three sources feed the chat-format dataset (the format hosted fine-tuning APIs take):

* curated examples, already in chat format (``data/finetune/examples.jsonl``);
* conversations in the step 4 memory database, one example per thread (opt-in: they may hold
  personal data);
* RAG question/answer pairs with their sources (``data/finetune/questions.jsonl``), rendered
  with step 3's own prompt around the passage the answer comes from.

The same questions, plus the training half of the RAG evaluation set, give the (question,
passage) pairs the embeddings trainer learns from. The passage of a question is the chunk of
one of its sources that contains the expected answer fragment (best BM25 match if several do),
cut exactly as step 3's index cuts the documents.

Splits are deterministic, by hash, so a rebuild never moves an example:

* the RAG evaluation set's validation split: an id whose SHA-256 falls in the lower half is
  held out - never trained on, only measured (``rag_split``); its test split is held out
  whole; ``check_no_overlap`` enforces both;
* examples and pairs: ``VALIDATION_SHARE`` of them, by the hash of their question (or of the
  whole example), go to the validation split.

Example:
    >>> import tempfile
    >>> dataset = build_dataset(DATA_DIR)
    >>> write_dataset(dataset, Path(tempfile.mkdtemp()))["counts"]
    {'train': 109, 'validation': 14, 'pairs_train': 112, 'pairs_validation': 13, ...}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR, read_jsonl, write_atomic
from shared.finetune.validation import example_key, example_problems

FINETUNE_DATA = DATA_DIR / "finetune"
CURATED_EXAMPLES = FINETUNE_DATA / "examples.jsonl"
TRAINING_QUESTIONS = FINETUNE_DATA / "questions.jsonl"
RAG_SET = DATA_DIR / "eval" / "validation" / "rag.jsonl"
RAG_TEST_SET = DATA_DIR / "eval" / "test" / "rag.jsonl"  # never trained on, never measured here
HELDOUT_SHARE = 0.5
VALIDATION_SHARE = 0.1
DATASET_FORMAT = 1
DATASET_MANIFEST = "dataset.json"
FILES = {"train": "train.jsonl", "validation": "validation.jsonl",
         "pairs_train": "pairs-train.jsonl", "pairs_validation": "pairs-validation.jsonl"}
QUESTION_FIELDS = ("id", "question", "answer", "sources", "expected")


def default_dataset_dir() -> Path:
    """Where ``roadmap finetune build`` writes by default: ``<cache>/finetune/dataset``."""
    from shared.core.settings import cache_dir

    return cache_dir() / "finetune" / "dataset"


def hash_fraction(key: str) -> float:
    """Map a string to [0, 1) by its SHA-256: the same key always lands in the same place."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def rag_split(item_id: str) -> str:
    """``"heldout"`` or ``"train"`` for a question of the RAG evaluation set, by its id.

    Example:
        >>> rag_split("q05"), rag_split("q01")
        ('heldout', 'train')
    """
    return "heldout" if hash_fraction(item_id) < HELDOUT_SHARE else "train"


def split_of(key: str, validation_share: float = VALIDATION_SHARE) -> str:
    """``"validation"`` for about ``validation_share`` of all keys, else ``"train"``."""
    return "validation" if hash_fraction("validation\x1f" + key) < validation_share else "train"


def normalise_question(text: str) -> str:
    """Case and spacing folded: two questions that differ only there are the same question."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Example:
    """One chat-format example, where it came from (``origin``, ``ref``) and what splits it."""

    messages: list[dict[str, Any]]
    origin: str  # "curated", "memory" or "rag"
    ref: str
    split_key: str


@dataclass(frozen=True)
class Pair:
    """A (question, passage) pair for the embeddings trainer."""

    id: str
    question: str
    passage: str
    source: str
    origin: str  # "questions" or "rag-train"

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "question": self.question, "passage": self.passage, "source": self.source,
                "origin": self.origin}


@dataclass
class Dataset:
    """Examples and pairs, split; how many duplicates were dropped; the held-out questions."""

    train: list[Example] = field(default_factory=list)
    validation: list[Example] = field(default_factory=list)
    pairs_train: list[Pair] = field(default_factory=list)
    pairs_validation: list[Pair] = field(default_factory=list)
    duplicates: int = 0
    heldout_dropped: int = 0
    heldout: list[dict[str, Any]] = field(default_factory=list)
    validation_share: float = VALIDATION_SHARE

    def counts(self) -> dict[str, Any]:
        examples = self.train + self.validation
        return {
            "train": len(self.train), "validation": len(self.validation),
            "pairs_train": len(self.pairs_train), "pairs_validation": len(self.pairs_validation),
            "by_origin": {origin: sum(e.origin == origin for e in examples) for origin in ("curated", "memory", "rag")},
            "duplicates_dropped": self.duplicates, "heldout_dropped": self.heldout_dropped,
            "heldout_questions": len(self.heldout),
        }


def curated_examples(path: Path = CURATED_EXAMPLES) -> list[Example]:
    """Read chat-format examples from a JSONL file.

    Raises:
        RoadmapError: The file is missing or a line is not a valid example (naming the line).
    """
    examples = []
    for number, row in enumerate(read_jsonl(path), start=1):
        problems = example_problems(row)
        if problems:
            raise RoadmapError(
                f"{path}: example {number}: {problems[0]}; check it with: roadmap finetune validate {path}"
            )
        examples.append(Example(row["messages"], "curated", f"{path.name}:{number}", example_key(row["messages"])))
    return examples


def memory_examples(db: Path | str | None = None) -> list[Example]:
    """One example per stored conversation of step 4 (system prompt, then the turns).

    Threads without an assistant reply are left out. A database that does not exist yet
    gives no examples (and is not created).

    Raises:
        RoadmapError: The database is damaged or locked.
    """
    from shared.memory.conversation import SYSTEM_PROMPT
    from shared.memory.store import memory_target, open_memory

    target = memory_target(db)
    if isinstance(target, Path) and not target.exists():
        return []
    roles = {"human": "user", "ai": "assistant"}
    examples = []
    with open_memory(db) as memory:
        for thread in memory.threads():
            turns = [{"role": roles[m.type], "content": m.text} for m in memory.history(thread.thread_id)
                     if m.type in roles and m.text.strip()]
            if any(t["role"] == "assistant" for t in turns):
                messages = [{"role": "system", "content": SYSTEM_PROMPT}, *turns]
                examples.append(Example(messages, "memory", f"thread {thread.thread_id}", example_key(messages)))
    return examples


def load_questions(path: Path = TRAINING_QUESTIONS) -> list[dict[str, Any]]:
    """Read training questions: ``id``, ``question``, ``answer``, ``sources``, ``expected``.

    Raises:
        RoadmapError: The file is missing, or a line lacks a field or names no source.
    """
    rows = read_jsonl(path, required=QUESTION_FIELDS)
    for number, row in enumerate(rows, start=1):
        if not (row["sources"] and str(row["question"]).strip() and str(row["answer"]).strip()):
            raise RoadmapError(f"{path}: question {number} ({row['id']}) needs a question, an answer and sources")
    return rows


def passage_for(question: str, sources: list[str], expected: str, chunks: dict[str, list[Document]]) -> Document:
    """The chunk a question is answered from: among its sources' chunks, those holding the
    expected fragment (all of them if none does), best BM25 match first, else the first.

    Raises:
        RoadmapError: None of the sources is in the documents folder.
    """
    from shared.evaluation.scoring import holds
    from shared.rag.retrieval import BM25

    candidates = [chunk for source in sources for chunk in chunks.get(source, [])]
    if not candidates:
        raise RoadmapError(f"none of the sources {', '.join(sources)} of {question!r} is in the documents folder")
    holding = [c for c in candidates if expected and holds(c.page_content, expected)] or candidates
    best = BM25(holding).search(question, 1)
    return best[0][0] if best else holding[0]


def rag_examples(questions: list[dict[str, Any]], chunks: dict[str, list[Document]]) -> list[Example]:
    """Render each question with step 3's prompt around its passage, and its answer as the reply."""
    from shared.rag.rag_prompt import RAG_PROMPT, answer_language, format_context, refusal_for

    roles = {"system": "system", "human": "user"}
    examples = []
    for row in questions:
        passage = passage_for(row["question"], row["sources"], str(row["expected"]), chunks)
        prompt = RAG_PROMPT.format_messages(
            context=format_context([passage]), question=row["question"], refusal=refusal_for(row["question"]),
            language=answer_language(row["question"]),
        )
        messages = [{"role": roles[m.type], "content": m.text} for m in prompt]
        messages.append({"role": "assistant", "content": row["answer"]})
        examples.append(Example(messages, "rag", row["id"], normalise_question(row["question"])))
    return examples


def retrieval_pairs(
    questions: list[dict[str, Any]], rag_items: list[dict[str, Any]], chunks: dict[str, list[Document]]
) -> list[Pair]:
    """(question, passage) pairs from the training questions and the *training* half of the RAG
    evaluation set (answerable questions only; the held-out half is never used)."""
    rows = [(q["id"], q["question"], q["sources"], str(q["expected"]), "questions") for q in questions]
    rows += [(r["id"], r["question"], r["gold_sources"], str(r["expected"]), "rag-train")
             for r in rag_items if r["answerable"] and rag_split(r["id"]) == "train"]
    pairs = []
    for item_id, question, sources, expected, origin in rows:
        passage = passage_for(question, sources, expected, chunks)
        pairs.append(Pair(item_id, question, passage.page_content, passage.metadata["source"], origin))
    return pairs


def heldout_questions(rag_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answerable questions of the held-out half of the RAG evaluation set."""
    return [r for r in rag_items if r["answerable"] and rag_split(r["id"]) == "heldout"]


def check_no_overlap(trained: list[tuple[str, str]], heldout: list[dict[str, Any]]) -> None:
    """Refuse training data that shares an id or a question with the held-out questions.

    Args:
        trained: ``(id, question)`` of everything that may be trained on.
        heldout: Held-out items (``id``, ``question``).

    Raises:
        RoadmapError: Naming the first overlap.
    """
    ids = {item["id"] for item in heldout}
    texts = {normalise_question(item["question"]): item["id"] for item in heldout}
    for item_id, question in trained:
        if item_id in ids or normalise_question(question) in texts:
            held = item_id if item_id in ids else texts[normalise_question(question)]
            raise RoadmapError(
                f"training question {item_id} ({question!r}) is held-out question {held}; remove it from the "
                "training data, or the measured gain would be a memorised answer"
            )


def _dedupe(examples: list[Example]) -> tuple[list[Example], int]:
    seen: set[str] = set()
    kept = []
    for example in examples:
        key = example_key(example.messages)
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept, len(examples) - len(kept)


def build_dataset(
    docs: Path = DATA_DIR,
    examples: Path | None = CURATED_EXAMPLES,
    questions: Path | None = TRAINING_QUESTIONS,
    rag_set: Path = RAG_SET,
    memory_db: Path | str | None = None,
    use_memory: bool = False,
    validation_share: float = VALIDATION_SHARE,
) -> Dataset:
    """Build the chat examples and retrieval pairs from every source, deduplicated and split.

    Args:
        docs: The documents folder the questions' sources live in.
        examples: Curated chat examples (``None``: none).
        questions: Training questions with answers and sources (``None``: none).
        rag_set: The RAG evaluation set; its training half adds pairs, its held-out half is
            checked against everything else.
        memory_db: The step 4 memory database (``None``: the default one).
        use_memory: Add the stored conversations.
        validation_share: Share of examples and pairs put in the validation split.

    Returns:
        The dataset.

    Raises:
        RoadmapError: A source is missing or malformed, a training question is held out, or
            there is nothing at all to train on.
    """
    from shared.evaluation.suites import load_rag_set
    from shared.rag.documents import load_folder, split_documents

    if not 0 <= validation_share < 1:
        raise RoadmapError(f"the validation share must be at least 0 and below 1, got {validation_share}")
    rows = load_questions(questions) if questions else []
    rag_items = load_rag_set(rag_set)
    chunks: dict[str, list[Document]] = {}
    if rows or rag_items:
        for chunk in split_documents(load_folder(docs)):
            chunks.setdefault(chunk.metadata["source"], []).append(chunk)
    found = (curated_examples(examples) if examples else []) + (memory_examples(memory_db) if use_memory else [])
    found += rag_examples(rows, chunks)
    kept, duplicates = _dedupe(found)
    pairs = retrieval_pairs(rows, rag_items, chunks)
    dataset = Dataset(duplicates=duplicates, heldout=heldout_questions(rag_items), validation_share=validation_share)
    never_trained = dataset.heldout + load_rag_set(RAG_TEST_SET)
    check_no_overlap([(p.id, p.question) for p in pairs], never_trained)
    # A stored conversation may well contain a held-out question someone once asked: such an
    # example is dropped (and counted), not trained on.
    heldout_texts = {normalise_question(item["question"]) for item in never_trained}
    clean = [e for e in kept
             if not any(m["role"] == "user" and normalise_question(str(m.get("content") or "")) in heldout_texts
                        for m in e.messages)]
    dataset.heldout_dropped = len(kept) - len(clean)
    kept = clean
    for example in kept:
        in_validation = split_of(example.split_key, validation_share) == "validation"
        (dataset.validation if in_validation else dataset.train).append(example)
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        key = (normalise_question(pair.question), pair.passage)
        if key in seen:
            dataset.duplicates += 1
            continue
        seen.add(key)
        split = split_of(normalise_question(pair.question), validation_share)
        (dataset.pairs_validation if split == "validation" else dataset.pairs_train).append(pair)
    if not dataset.train:
        raise RoadmapError("the dataset is empty: no example to train on; add curated examples or training questions")
    return dataset


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    """Write ``rows`` as JSONL, atomically; return the text's SHA-256."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_atomic(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_dataset(dataset: Dataset, out: Path, force: bool = False) -> dict[str, Any]:
    """Write the four JSONL files and a ``dataset.json`` manifest into ``out``.

    A folder this function wrote before is rewritten freely; one holding other files of the
    same names is left alone unless ``force``.

    Returns:
        The manifest: counts, file hashes, split rules, date.

    Raises:
        RoadmapError: ``out`` holds files this project did not write (without ``force``).
    """
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise RoadmapError(f"{out} is a file; give a folder for the dataset with --out DIR")
    ours = (out / DATASET_MANIFEST).exists()
    clashes = [name for name in FILES.values() if (out / name).exists()]
    if clashes and not ours and not force:
        raise RoadmapError(f"{out} already holds {', '.join(clashes)} not written by roadmap finetune build; "
                           "pick another --out DIR or pass --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train": [{"messages": e.messages} for e in dataset.train],
        "validation": [{"messages": e.messages} for e in dataset.validation],
        "pairs_train": [p.as_dict() for p in dataset.pairs_train],
        "pairs_validation": [p.as_dict() for p in dataset.pairs_validation],
    }
    manifest = {
        "format": DATASET_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": dataset.counts(),
        "splits": {"heldout_share": HELDOUT_SHARE, "validation_share": dataset.validation_share,
                   "rule": "sha256 of the RAG question id (held out) / of the question (validation)"},
        "heldout_ids": [item["id"] for item in dataset.heldout],
        "sha256": {FILES[name]: write_jsonl(out / FILES[name], rows) for name, rows in files.items()},
    }
    (out / DATASET_MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def load_pairs(path: Path) -> list[Pair]:
    """Read (question, passage) pairs written by ``write_dataset`` (or by hand: ``question``,
    ``passage``, optional ``id``, ``source``).

    Raises:
        RoadmapError: The file is missing or a line lacks ``question`` or ``passage``.
    """
    rows = read_jsonl(path, required=("question", "passage"))
    return [Pair(str(r.get("id", n)), r["question"], r["passage"], r.get("source", ""), r.get("origin", "file"))
            for n, r in enumerate(rows, start=1)]
