
from pathlib import Path

import pytest

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR
from shared.rag.documents import (
    MAX_FILE_BYTES,
    SplitSettings,
    UnreadableFile,
    chunk_id,
    find_files,
    load_file,
    load_folder,
    split_documents,
)

PDF = DATA_DIR / "manuals" / "price-list-2026.pdf"


def test_find_files_lists_supported_files_and_skips_hidden_ones(tiny_docs):
    (tiny_docs / ".hidden.md").write_text("secret", encoding="utf-8")
    (tiny_docs / "data.csv").write_text("a,b", encoding="utf-8")
    names = [p.relative_to(tiny_docs).as_posix() for p in find_files(tiny_docs)]
    assert names == ["fan.txt", "ko/kettle.md", "lamp.md", "notes/injection.txt"]


def test_a_link_to_a_file_outside_the_folder_is_skipped_with_a_warning(tiny_docs, tmp_path):
    outside = tmp_path / "private" / "diary.md"
    outside.parent.mkdir()
    outside.write_text("My bank PIN is 4321.", encoding="utf-8")
    (tiny_docs / "notes" / "diary.md").symlink_to(outside)
    (tiny_docs / "private").symlink_to(outside.parent, target_is_directory=True)
    (tiny_docs / "lamp-again.md").symlink_to(tiny_docs / "lamp.md")  # inside: indexed once, as lamp.md
    warnings = []
    names = [p.relative_to(tiny_docs).as_posix() for p in find_files(tiny_docs, warnings.append)]
    assert names == ["fan.txt", "ko/kettle.md", "lamp.md", "notes/injection.txt"]
    assert warnings == ["skipped notes/diary.md: it links to a file outside the documents folder, which is not indexed"]
    pages = load_folder(tiny_docs, warnings.append)
    assert "4321" not in " ".join(page.page_content for page in pages)


def test_a_file_over_the_size_limit_is_skipped_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "dump.md"
    path.write_text("word " * (MAX_FILE_BYTES[".md"] // 5 + 1), encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self.name}"))
    with pytest.raises(UnreadableFile, match=r"^5.0 MB, over the 5 MB limit for a .md file; split it"):
        load_file(path, tmp_path)


def test_missing_and_empty_folders_are_user_errors(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist"):
        find_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoadmapError, match="no .md, .txt, .html or .pdf"):
        find_files(tmp_path / "empty")


def test_text_file_becomes_one_page_with_relative_source(tiny_docs):
    [page] = load_file(tiny_docs / "ko" / "kettle.md", tiny_docs)
    assert page.metadata == {"source": "ko/kettle.md", "page": None}
    assert "45분" in page.page_content


def test_html_file_becomes_its_visible_text(tmp_path):
    (tmp_path / "lamp.html").write_text(
        "<!DOCTYPE html><html><head><title>Aurora lamp</title><style>p {color: red}</style>"
        "<script>alert('hi')</script></head><body><nav><a href='/'>Home</a></nav>"
        "<h1>Brightness</h1><p>Five&nbsp;levels, from 10 &amp; up to 800 lumens.</p>"
        "<table><tr><td>Warranty</td><td>2 years</td></tr></table><script>track()</script>"
        "<p>Clean it with a <b>dry</b> cloth.</p></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "ko.htm").write_text("<p>주전자는 45분 뒤에 꺼집니다.</p>", encoding="utf-8")
    assert [p.name for p in find_files(tmp_path)] == ["ko.htm", "lamp.html"]
    [page] = load_file(tmp_path / "lamp.html", tmp_path)
    assert page.metadata == {"source": "lamp.html", "page": None}
    assert page.page_content.split("\n\n") == [
        "Aurora lamp", "Home", "Brightness", "Five levels, from 10 & up to 800 lumens.", "Warranty 2 years",
        "Clean it with a dry cloth.",
    ]
    assert load_file(tmp_path / "ko.htm", tmp_path)[0].page_content == "주전자는 45분 뒤에 꺼집니다."


def test_an_html_page_without_visible_text_is_skipped(tmp_path):
    (tmp_path / "empty.html").write_text("<html><head><script>x()</script></head><body> </body></html>")
    with pytest.raises(UnreadableFile, match="no text found"):
        load_file(tmp_path / "empty.html", tmp_path)


def test_pdf_keeps_page_numbers(tmp_path):
    pages = load_file(PDF, PDF.parent)
    assert [p.metadata["page"] for p in pages] == [1, 2, 3]
    assert "Breeze fan BF-20" in pages[1].page_content


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not really a pdf", "PDF"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
        ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        ("blank.txt", b"  \n", "no text"),
    ],
)
def test_unreadable_files_raise_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=reason):
        load_file(path, tmp_path)


def test_load_folder_skips_bad_files_with_a_warning_naming_them(tiny_docs):
    (tiny_docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    warnings = []
    pages = load_folder(tiny_docs, warn=warnings.append)
    assert sorted(p.metadata["source"] for p in pages) == ["fan.txt", "ko/kettle.md", "lamp.md", "notes/injection.txt"]
    assert len(warnings) == 1 and "broken.pdf" in warnings[0]


def test_only_unreadable_files_is_a_user_error(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RoadmapError, match="could be read"):
        load_folder(tmp_path)


def test_chunks_keep_source_page_and_a_stable_unique_id():
    pages = load_file(PDF, PDF.parent)
    chunks = split_documents(pages, SplitSettings(chunk_size=120, chunk_overlap=20))
    again = split_documents(pages, SplitSettings(chunk_size=120, chunk_overlap=20))
    assert [c.metadata["chunk_id"] for c in chunks] == [c.metadata["chunk_id"] for c in again]
    assert len({c.metadata["chunk_id"] for c in chunks}) == len(chunks)
    assert all(len(c.page_content) <= 120 for c in chunks)
    assert {c.metadata["page"] for c in chunks} == {1, 2, 3}
    assert all(c.metadata["source"] == "price-list-2026.pdf" for c in chunks)


def test_chunk_id_changes_with_the_text():
    assert chunk_id("a.md", None, 0, "one") != chunk_id("a.md", None, 0, "two")
    assert chunk_id("a.md", None, 0, "one") != chunk_id("b.md", None, 0, "one")


def test_project_corpus_meets_the_brief():
    files = find_files(DATA_DIR)
    suffixes = {p.suffix for p in files}
    korean = [p for p in files if any("\uac00" <= ch <= "\ud7a3" for ch in p.read_text("utf-8", errors="ignore"))]
    assert len(files) >= 20 and suffixes == {".md", ".txt", ".pdf"}
    assert len(korean) >= 5
