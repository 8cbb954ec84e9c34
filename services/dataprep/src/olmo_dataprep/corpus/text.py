"""Plain-text helpers shared by the converters: word counts, re-flowing hard-wrapped
paragraphs, dropping tables of contents, merging sections too short to stand alone."""

from __future__ import annotations

import re
from collections.abc import Sequence


def word_count(text: str) -> int:
    return len(text.split())


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


_WRAPPED_LINE = re.compile(r"^   \S")
_HYPHEN_END = re.compile(r"[A-Za-z]-$")


def format_paragraph(lines: list[str]) -> str:
    """A hard-wrapped prose paragraph (every line indented by exactly three spaces) becomes one
    line; anything else (art, code, tables) is kept line by line, dedented by up to 3."""
    if all(_WRAPPED_LINE.match(line) for line in lines):
        out = ""
        for line in lines:
            piece = line.strip()
            if not out:
                out = piece
            elif _HYPHEN_END.search(out) and piece[:1].islower():
                out += piece
            else:
                out += " " + piece
        return out
    indent = min(len(line) - len(line.lstrip(" ")) for line in lines)
    cut = min(indent, 3)
    return "\n".join(line[cut:].rstrip() for line in lines)


def split_paragraphs(lines: Sequence[str]) -> list[list[str]]:
    """The blank-line separated paragraphs of ``lines``, each a list of right-stripped lines."""
    paras: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paras.append(current)
            current = []
    if current:
        paras.append(current)
    return paras


_SENTENCE_END = (".", "!", "?", ":", '"', "\u201d", ")")


def drop_toc(paras: list[list[str]]) -> list[list[str]]:
    """Remove a "Table of Contents" paragraph and the one-line entries that follow it."""
    out: list[list[str]] = []
    in_toc = False
    for para in paras:
        if len(para) == 1 and para[0].strip() == "Table of Contents":
            in_toc = True
            continue
        if in_toc and len(para) == 1 and not para[0].rstrip().endswith(_SENTENCE_END):
            continue
        in_toc = False
        out.append(para)
    return out


def merge_short(sections: list[tuple[str, str, int]], min_words: int) -> list[tuple[str, str, int]]:
    """``(title, text, body_words)`` sections: one whose body has fewer than ``min_words`` words
    is prepended to the next; a short last one is appended to the previous (dropped if empty)."""
    out: list[tuple[str, str, int]] = []
    pending: tuple[str, str, int] | None = None
    for title, text, words in sections:
        if pending is not None:
            title, text, words = pending[0], pending[1] + "\n\n" + text, pending[2] + words
            pending = None
        if words < min_words:
            pending = (title, text, words)
        else:
            out.append((title, text, words))
    if pending is not None and pending[2] > 0:
        if out:
            title, text, words = out.pop()
            out.append((title, text + "\n\n" + pending[1], words + pending[2]))
        else:
            out.append(pending)
    return out
