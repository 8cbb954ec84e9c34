"""The ``docs`` source: HTML manuals (Debian Reference, GNU Coding Standards, Information for
GNU Maintainers) converted to plain text with the stdlib ``html.parser``.

Scripts, styles, navigation and tables of contents are dropped, paragraphs are separated by
blank lines, headings stand on their own lines, list items and table rows take one line each.
One document per section (``h1``-``h4``); a section with fewer than ``MIN_SECTION_WORDS`` words
of body is merged into the next one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

from .settings import MIN_SECTION_WORDS
from .text import collapse_whitespace, merge_short, word_count

_SKIP_TAGS = frozenset(
    {"script", "style", "head", "title", "nav", "noscript", "template", "svg", "iframe", "object"}
)
_SKIP_CLASSES = frozenset(
    {
        # DocBook
        "toc",
        "list-of-tables",
        "list-of-figures",
        "list-of-examples",
        "navheader",
        "navfooter",
        # Texinfo
        "header",
        "nav-panel",
        "contents",
        "shortcontents",
        "Contents_element",
        "section-toc",
        "mini-toc",
        "menu",
        "index-cp",
        "index-fn",
        "index-vr",
        "index-ky",
        "index-pg",
        "index-tp",
        "printindex",
        "copiable-anchor",
        # Sphinx
        "related",
        "sphinxsidebar",
        "footer",
        "headerlink",
    }
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "wbr"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "caption",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
        *_HEADINGS,
    }
)


@dataclass(frozen=True)
class Block:
    """One block of converted HTML: ``kind`` is ``heading`` (with ``level``), ``para``,
    ``pre``, ``item`` (list item / definition) or ``row`` (table row, cells joined by ``|``)."""

    kind: str
    text: str
    level: int = 0


class _BlockParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._pieces: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0
        self._pre = 0
        self._heading = 0
        self._items = 0
        self._rows = 0
        self._cells = 0
        self._prefix = ""

    # -- skipping
    def _skips(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _SKIP_TAGS:
            return True
        for name, value in attrs:
            if name == "class" and value and _SKIP_CLASSES.intersection(value.split()):
                return True
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if self._skips(tag, attrs):
            if tag not in _VOID_TAGS:
                self._flush()
                self._skip_tag, self._skip_depth = tag, 1
            return
        self._open(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is None and not self._skips(tag, attrs):
            self._open(tag)
            if tag not in _VOID_TAGS:
                self._close(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        self._close(tag)

    def handle_data(self, data: str) -> None:
        if self._skip_tag is None:
            self._pieces.append(data)

    # -- structure
    def _open(self, tag: str) -> None:
        if tag in ("td", "th"):
            if self._cells:
                self._pieces.append(" | ")
            self._cells += 1
            return
        if tag == "br" and self._pre:
            self._pieces.append("\n")
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADINGS:
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._pre += 1
        elif tag in ("li", "dt", "dd"):
            self._items += 1
            self._prefix = "- " if tag == "li" else ""
        elif tag == "tr":
            self._rows += 1
            self._cells = 0

    def _close(self, tag: str) -> None:
        if tag in ("td", "th"):
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADINGS:
            self._heading = 0
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag in ("li", "dt", "dd"):
            self._items = max(0, self._items - 1)
        elif tag == "tr":
            self._rows = max(0, self._rows - 1)
            self._cells = 0

    def _flush(self) -> None:
        raw = "".join(self._pieces)
        self._pieces.clear()
        if self._pre:
            lines = [line.rstrip() for line in raw.expandtabs(8).split("\n")]
            while lines and not lines[0]:
                lines.pop(0)
            while lines and not lines[-1]:
                lines.pop()
            if lines:
                self.blocks.append(Block("pre", "\n".join(lines)))
            return
        text = collapse_whitespace(raw)
        if self._rows:
            text = re.sub(r"^(\|\s*)+|(\s*\|)+$", "", text).strip()
        if not text:
            return
        if self._heading:
            self.blocks.append(Block("heading", text, self._heading))
        elif self._rows:
            self.blocks.append(Block("row", text))
        elif self._items:
            self.blocks.append(Block("item", self._prefix + text))
            self._prefix = ""
        else:
            self.blocks.append(Block("para", text))

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_blocks(html: str) -> list[Block]:
    """The text blocks of an HTML page, in order (see ``Block``)."""
    parser = _BlockParser()
    parser.feed(html)
    parser.close()
    return parser.blocks


def _join_blocks(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    prev: Block | None = None
    for block in blocks:
        if prev is not None:
            tight = prev.kind == block.kind and block.kind in ("item", "row")
            out.append("\n" if tight else "\n\n")
        out.append(block.text)
        prev = block
    return "".join(out)


# Back-of-book indexes: lists of terms and page links, not prose.
_DROP_SECTIONS = frozenset({"Index", "Concept Index", "Search Page"})


def html_to_sections(html: str, *, max_level: int = 4) -> list[tuple[str, str]]:
    """``(title, text)`` per section of an HTML page: a heading of level ``max_level`` or less
    starts a section (an index section is dropped); a section with fewer than ``MIN_SECTION_WORDS`` words of body is merged
    into the next one (or, at the end, the previous one)."""
    sections: list[tuple[str, list[Block]]] = []
    for block in html_to_blocks(html):
        if block.kind == "heading" and block.level <= max_level:
            sections.append((block.text, [block]))
        elif sections:
            sections[-1][1].append(block)
        else:
            sections.append(("", [block]))
    raw = [
        (
            title,
            _join_blocks(blocks),
            sum(word_count(b.text) for b in blocks if b.kind != "heading"),
        )
        for title, blocks in sections
        if title not in _DROP_SECTIONS
    ]
    return [(title, text) for title, text, _ in merge_short(raw, MIN_SECTION_WORDS)]
