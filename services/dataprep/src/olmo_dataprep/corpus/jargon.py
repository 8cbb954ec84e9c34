"""The ``books`` source: The Jargon File's plain-text edition as documents.

The prose chapters and appendix sections become one document each; the lexicon's entries are
grouped, in order, into documents of at least ``GLOSSARY_DOC_WORDS`` words. Hard-wrapped
paragraphs are re-flowed into one line each; pre-formatted blocks (ASCII art, code, tables) are
kept as is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .packages import CorpusBuildError
from .settings import GLOSSARY_DOC_WORDS, MIN_SECTION_WORDS
from .text import (
    collapse_whitespace,
    drop_toc,
    format_paragraph,
    merge_short,
    split_paragraphs,
    word_count,
)

_JARGON_ENTRY = re.compile(r"^   :(.+?):\s*(.*)$")
_JARGON_LETTER = re.compile(r"^  [0-9A-Z]$")
_JARGON_CENTERED = re.compile(r"^ {10,}(Part\s[IVX]+\.\s.+|Welcome\sto\sthe\sJargon\sFile)$")


def _is_box_drawing(ch: str) -> bool:
    return "\u2500" <= ch <= "\u257f"


def _jargon_heading(lines: Sequence[str], i: int) -> str | None:
    line = lines[i]
    match = _JARGON_CENTERED.match(line)
    if match:
        return collapse_whitespace(match.group(1))
    if not line or line[0] == " " or _is_box_drawing(line[0]):
        return None
    blank_before = i == 0 or not lines[i - 1].strip()
    blank_after = i + 1 >= len(lines) or not lines[i + 1].strip()
    return collapse_whitespace(line) if blank_before and blank_after else None


def _jargon_entry_text(lines: list[str]) -> str:
    match = _JARGON_ENTRY.match(lines[0])
    assert match is not None
    term, rest = match.group(1).strip(), match.group(2).strip()
    rest = re.sub(r"^//,?\s*", "", rest).strip()
    header = f"{term}: {rest}" if rest else term
    body = [format_paragraph(p) for p in split_paragraphs(lines[1:])]
    return "\n\n".join([header, *body])


def jargon_documents(text: str) -> list[tuple[str, str]]:
    """``(title, text)`` documents of the Jargon File's plain-text edition, in file order: the
    prose sections (front matter, Part I chapters, appendices) one each, the lexicon's entries
    grouped into documents of at least ``GLOSSARY_DOC_WORDS`` words."""
    lines = text.replace("\r\n", "\n").split("\n")
    heads = [(i, h) for i in range(len(lines)) if (h := _jargon_heading(lines, i)) is not None]
    start = next((k for k, (_, h) in enumerate(heads) if h == "Welcome to the Jargon File"), None)
    if start is None:
        raise CorpusBuildError("jargon.txt: 'Welcome to the Jargon File' heading not found")
    heads = heads[start:]
    docs: list[tuple[str, str]] = []
    prose: list[tuple[str, str, int]] = []

    def flush_prose() -> None:
        docs.extend((title, body) for title, body, _ in merge_short(prose, MIN_SECTION_WORDS))
        prose.clear()

    for k, (i, head) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        body = lines[i + 1 : end]
        if head.startswith("Part "):
            continue  # part title pages: only a table of contents
        if head == "Glossary":
            flush_prose()
            docs.extend(_glossary_documents(body))
            continue
        paras = [format_paragraph(p) for p in drop_toc(split_paragraphs(body))]
        words = sum(word_count(p) for p in paras)
        prose.append((head, "\n\n".join([head, *paras]), words))
    flush_prose()
    return docs


def _glossary_documents(lines: Sequence[str]) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []  # (term, text)
    current: list[str] | None = None
    for line in [*lines, "  0"]:  # a sentinel letter heading ends the last entry
        entry = _JARGON_ENTRY.match(line)
        if entry or _JARGON_LETTER.match(line):
            if current is not None:
                term = _JARGON_ENTRY.match(current[0])
                assert term is not None
                entries.append((term.group(1).strip(), _jargon_entry_text(current)))
            current = [line] if entry else None  # letter heading: skip its term index
        elif current is not None:
            current.append(line)
    docs: list[tuple[str, str]] = []
    group: list[tuple[str, str]] = []
    words = 0
    for term, entry_text in entries:
        group.append((term, entry_text))
        words += word_count(entry_text)
        if words >= GLOSSARY_DOC_WORDS:
            docs.append(_glossary_doc(group))
            group, words = [], 0
    if group:
        if docs and words < GLOSSARY_DOC_WORDS // 3:
            title, text = docs.pop()
            docs.append(_glossary_doc_merge(title, text, group))
        else:
            docs.append(_glossary_doc(group))
    return docs


def _glossary_doc(group: list[tuple[str, str]]) -> tuple[str, str]:
    first, last = group[0][0], group[-1][0]
    title = f"Glossary: {first}" if first == last else f"Glossary: {first} .. {last}"
    return title, "\n\n".join(text for _, text in group)


def _glossary_doc_merge(title: str, text: str, group: list[tuple[str, str]]) -> tuple[str, str]:
    first = title.removeprefix("Glossary: ").split(" .. ")[0]
    return f"Glossary: {first} .. {group[-1][0]}", "\n\n".join([text, *(t for _, t in group)])
