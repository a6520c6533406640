"""Loading a folder of documents and splitting them into chunks for retrieval.

* ``find_files`` lists the ``.md``, ``.txt``, ``.html`` and ``.pdf`` files under a folder (a link
  to a file outside the folder is skipped with a warning: only the folder's own files are indexed);
* ``load_file`` turns one file into LangChain ``Document`` pages (PDF page numbers kept, HTML
  reduced to its visible text); a file larger than ``MAX_FILE_BYTES`` is skipped before it is read;
* ``load_folder`` loads them all, skipping unreadable files with a warning that names them;
* ``split_documents`` cuts pages into chunks that keep source, page and a stable chunk id.

Example:
    >>> from shared.core.files import DATA_DIR
    >>> pages = load_folder(DATA_DIR)
    >>> chunks = split_documents(pages)
    >>> chunks[0].metadata
    {'source': 'internal/company-history.txt', 'page': None, 'chunk': 0, 'chunk_id': '...'}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path

from langchain_core.documents import Document

from shared.core.errors import RoadmapError

HTML_SUFFIXES = (".html", ".htm")
# Larger than any manual or policy; a bigger text file is most likely a dump or a log, which
# would take minutes and gigabytes to split. PDFs carry images and fonts, so they may be larger.
MAX_FILE_BYTES = {".md": 5_000_000, ".txt": 5_000_000, **dict.fromkeys(HTML_SUFFIXES, 5_000_000), ".pdf": 50_000_000}
SUPPORTED_SUFFIXES = tuple(MAX_FILE_BYTES)
SUPPORTED_NAMES = ".md, .txt, .html or .pdf"

Warn = Callable[[str], None]


class UnreadableFile(Exception):
    """A file that cannot be turned into text (binary, corrupt, not UTF-8, empty)."""


@dataclass(frozen=True)
class SplitSettings:
    """How pages are cut into chunks; stored in the index manifest, so changing it rebuilds."""

    chunk_size: int = 800
    chunk_overlap: int = 120

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def find_files(folder: Path, warn: Warn | None = None) -> list[Path]:
    """List the supported files under ``folder``, recursively, in sorted order.

    Hidden files and folders (a name starting with ``.``) are left out, and so is a link to a
    file outside ``folder`` (with a warning): it could point anywhere, e.g. at a private file.

    Args:
        folder: The documents folder.
        warn: Called with one line for each link left out (default: ignore).

    Returns:
        Absolute, resolved paths of ``.md``, ``.txt`` and ``.pdf`` files, all inside ``folder``.

    Raises:
        RoadmapError: The folder is missing, is not a folder, or holds no supported file.
    """
    folder = folder.expanduser()
    if not folder.is_dir():
        raise RoadmapError(f"documents folder {folder} does not exist; give an existing folder with --docs DIR")
    root = folder.resolve()
    files = set()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in name.parts)
        if hidden or path.suffix.lower() not in SUPPORTED_SUFFIXES or not path.is_file():
            continue
        target = path.resolve()
        if target.is_relative_to(root):
            files.add(target)
        elif warn:
            warn(skip_message(name.as_posix(), "it links to a file outside the documents folder, which is not indexed"))
    if not files:
        raise RoadmapError(f"{folder} holds no {SUPPORTED_NAMES} files; add some documents or pick another --docs DIR")
    return sorted(files)


def relative_source(path: Path, root: Path) -> str:
    """The name a chunk cites: the file's path relative to the docs folder, with ``/``."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise UnreadableFile("binary content, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


class _HtmlText(HTMLParser):
    """The visible text of an HTML page: the title, then the body, a paragraph per block."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCKS = frozenset({
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "footer",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tr", "ul",
    })

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.hidden = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        paragraphs = ("".join(self.title), *"".join(self.parts).split("\n\n"))
        return "\n\n".join(line for line in (re.sub(r"\s+", " ", part).strip() for part in paragraphs) if line)


def html_text(markup: str) -> str:
    """The visible text of an HTML page (no tags, scripts or styles), a paragraph per block.

    Example:
        >>> print(html_text("<title>Lamp</title><p>Bright&nbsp;light.</p><script>x()</script>"))
        Lamp
        <BLANKLINE>
        Bright light.
    """
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    return parser.text()


def _read_pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        return [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UnreadableFile(f"corrupt or unsupported PDF ({type(exc).__name__})") from None


def load_file(path: Path, root: Path) -> list[Document]:
    """Read one file into pages: one ``Document`` per PDF page, one per text file.

    Args:
        path: The file, inside ``root``.
        root: The documents folder; ``source`` metadata is relative to it.

    Returns:
        Pages with metadata ``source`` (relative path) and ``page`` (1-based for PDFs,
        ``None`` for text files). Blank PDF pages are left out.

    Raises:
        UnreadableFile: The file is larger than ``MAX_FILE_BYTES`` allows (it is not read), binary,
            corrupt, not UTF-8, or holds no text.
    """
    source = relative_source(path, root)
    suffix = path.suffix.lower()
    try:
        limit = MAX_FILE_BYTES.get(suffix, MAX_FILE_BYTES[".txt"])
        size = path.stat().st_size
        if size > limit:
            raise UnreadableFile(f"{size / 1e6:.1f} MB, over the {limit // 1_000_000} MB limit for a {suffix} file; "
                                 "split it into smaller files")
        if suffix == ".pdf":
            texts = _read_pdf_pages(path)
            pages = [
                Document(page_content=text, metadata={"source": source, "page": number})
                for number, text in enumerate(texts, start=1)
                if text.strip()
            ]
        else:
            text = _read_text(path)
            if suffix in HTML_SUFFIXES:
                text = html_text(text)
            pages = [Document(page_content=text, metadata={"source": source, "page": None})] if text.strip() else []
    except OSError as exc:
        raise UnreadableFile(exc.strerror or str(exc)) from None
    if not pages:
        raise UnreadableFile("no text found")
    return pages


def load_folder(folder: Path, warn: Warn | None = None) -> list[Document]:
    """Load every supported file under ``folder``, skipping the unreadable ones.

    Args:
        folder: The documents folder.
        warn: Called with one line per skipped file (default: ignore).

    Returns:
        The pages of all readable files.

    Raises:
        RoadmapError: No supported file, or none of them could be read.
    """
    pages: list[Document] = []
    for path in find_files(folder, warn):
        try:
            pages.extend(load_file(path, folder))
        except UnreadableFile as exc:
            if warn:
                warn(skip_message(relative_source(path, folder), str(exc)))
    if not pages:
        raise no_readable_files(folder)
    return pages


def no_readable_files(folder: Path) -> RoadmapError:
    """The error for a folder in which every supported file had to be skipped."""
    return RoadmapError(f"none of the files in {folder} could be read; add {SUPPORTED_NAMES} documents (text as UTF-8)")


def skip_message(source: str, reason: str) -> str:
    """The one-line warning for a skipped file, e.g. ``skipped notes/old.pdf: no text found``."""
    return f"skipped {source}: {reason}"


def chunk_id(source: str, page: int | None, index: int, text: str) -> str:
    """A stable id for a chunk: same file, place and text give the same id on every run.

    Example:
        >>> chunk_id("faq.md", None, 0, "Hello") == chunk_id("faq.md", None, 0, "Hello")
        True
    """
    key = f"{source}\x1f{page}\x1f{index}\x1f{hashlib.sha256(text.encode()).hexdigest()}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def split_documents(pages: list[Document], settings: SplitSettings = SplitSettings()) -> list[Document]:
    """Split pages into overlapping chunks with LangChain's recursive character splitter.

    Args:
        pages: Pages from ``load_file`` / ``load_folder``.
        settings: Chunk size and overlap, in characters.

    Returns:
        Chunks whose metadata adds ``chunk`` (position within the page) and ``chunk_id``.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        # Paragraphs first, then lines, then sentences (English and Korean end with ". " too).
        separators=["\n\n", "\n", ". ", " ", ""],
    )
    chunks = []
    for page in pages:
        for index, text in enumerate(splitter.split_text(page.page_content)):
            meta = page.metadata
            chunks.append(
                Document(
                    page_content=text,
                    metadata={**meta, "chunk": index, "chunk_id": chunk_id(meta["source"], meta["page"], index, text)},
                )
            )
    return chunks
