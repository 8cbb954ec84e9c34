"""PII handling for the content stage: find e-mail addresses, phone numbers and IP addresses.

Dolma's rule: a document with at most ``mask_threshold`` (5) PII matches keeps its text with
every match replaced by a special token (``|||EMAIL_ADDRESS|||``, ``|||PHONE_NUMBER|||``,
``|||IP_ADDRESS|||``, which the PII-aware tokenizer knows); a document with more is removed.
The *total* number of matches across all enabled kinds decides between masking and removal: a
page with three addresses and three phone numbers is a contact list and goes, even though neither
kind alone exceeds the threshold.

The patterns favour precision over recall: phone numbers need separators or a leading ``+``
(so plain long digit strings, years and version strings do not match), IPv4 octets must be
0-255 without leading zeros, and an IPv6 candidate must parse as an address.

Speed: every pattern is a compiled ``re`` expression, but ``re`` tries a pattern that starts
with a lookbehind at every position of the text. Phone numbers, IPv4 and IPv6 addresses have a
bounded length and contain a short "anchor" near their start (a ``+``, ``(ddd)``, ``ddd-d`` or
``d.d``; ``:`` and ``:`` at most four hex digits apart), so the text is first scanned once for
anchors (a ``re`` search that skips to their first characters in C) and the patterns run only
in windows around them, with margins covering the longest match and its lookahead. No match or
lookaround crosses from one window into another, so the matches are exactly those of a scan of
the whole text (checked against one by the tests).

Stdlib only; must not import torch.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import Field

from olmo.config import StrictConfig

__all__ = [
    "EMAIL_TOKEN",
    "IP_TOKEN",
    "PHONE_TOKEN",
    "REASON_PII_TOO_MANY",
    "PiiConfig",
    "PiiMatch",
    "PiiResult",
    "find_pii",
    "scan_pii",
]

EMAIL_TOKEN = "|||EMAIL_ADDRESS|||"
PHONE_TOKEN = "|||PHONE_NUMBER|||"
IP_TOKEN = "|||IP_ADDRESS|||"
REASON_PII_TOO_MANY = "pii_too_many"

EMAIL = "email_address"
PHONE = "phone_number"
IP = "ip_address"
_TOKENS = {EMAIL: EMAIL_TOKEN, PHONE: PHONE_TOKEN, IP: IP_TOKEN}


class PiiConfig(StrictConfig):
    """PII settings of the content stage."""

    mask_threshold: int = Field(default=5, ge=0)
    """At most this many matches in a document (all kinds together): mask them; more: drop."""
    emails: bool = True
    phone_numbers: bool = True
    ip_addresses: bool = True


_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])"
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"  # local part: no leading, trailing or double dot
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)

# Two shapes, both requiring structure a plain number lacks:
#  * international: a leading "+", country code, then 2-5 separated groups (digits counted after);
#  * North American: optional "1" prefix, "(555) 123-4567" or "555-123-4567" / "555.123.4567" /
#    "555 123 4567" with the same separator twice.
_PHONE_RE = re.compile(
    r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-](?:\(\d{1,4}\)|\d{1,6})){2,5}(?![\w]|[.-]\d)"
    r"|(?<![\w+])\+[1-9]\d{7,14}(?!\w)"
    r"|(?<![\w.+-])(?:1[ .-]?)?"
    r"(?:\(\d{3}\)[ ]?\d{3}[ .-]\d{4}|\d{3}(?P<sep>[ .-])\d{3}(?P=sep)\d{4})"
    r"(?![\w]|[.-]\d)"
)
_PHONE_MIN_DIGITS = 8
_PHONE_MAX_DIGITS = 15

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
# Candidates only; each must parse as an IPv6 address and have at least 3 non-empty groups
# (so "12:30:45", "a::b" and C++ "std::x" never count).
_IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


@dataclass(frozen=True)
class _Anchors:
    """Where matches of some patterns can be: each of their matches holds a match of ``regex``
    (the anchor, at most ``length`` characters long) starting at most ``before`` characters into
    it; matches are at most ``longest`` characters long, and their lookaheads read at most
    ``lookahead`` characters past their end (lookbehinds read only characters before a match,
    which ``re`` sees outside a search's bounds too)."""

    regex: re.Pattern[str]
    before: int
    length: int
    longest: int
    lookahead: int = 2

    def windows(self, text: str) -> list[tuple[int, int]]:
        """Disjoint ``(start, end)`` windows, in text order, that hold every such match and
        everything its lookarounds read.

        A match of ``regex`` skipped by ``finditer`` lies inside a found one that starts at most
        ``length - 1`` characters before it, so a window from ``before`` characters ahead of each
        found anchor to ``length - 1 + longest + lookahead`` characters after it covers every
        match; overlapping windows are merged, so no match crosses from one into another.
        """
        size = len(text)
        after = self.length + self.longest + self.lookahead  # one more than needed
        windows: list[tuple[int, int]] = []
        for m in self.regex.finditer(text):
            anchor = m.start()
            lo, hi = max(anchor - self.before, 0), min(anchor + after, size)
            if windows and lo <= windows[-1][1]:
                windows[-1] = (windows[-1][0], hi)
            else:
                windows.append((lo, hi))
        return windows


# Every phone number holds a "+", a "(ddd)" or "ddd" + separator + digit, and every IPv4 address
# a digit, a "." and a digit, starting at most 2 characters in (after an optional "1" and
# separator, or in the first octet). The regex starts with a character set, which ``re`` skips to
# in C. Longest matches (``re``'s computed maximum width, checked by the tests): phone 39, IPv4 15.
_DIGIT_ANCHORS = _Anchors(
    re.compile(r"[+(\d](?:(?<=\+)|(?<=\()\d{3}\)|(?<=\d)(?:\d\d[ .-]\d|\.\d))"),
    before=2,
    length=5,
    longest=39,
)
# Every IPv6 candidate holds ":", at most 4 hex digits and ":", starting at most 4 characters in.
_COLON_ANCHORS = _Anchors(re.compile(r":[0-9A-Fa-f]{0,4}:"), before=4, length=6, longest=39)


# An e-mail address is made of these characters only and holds an "@"; its lookahead reads at
# most 2 characters past its end.
_EMAIL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_%+.@-")
_EMAIL_RUN_END = re.compile(r"[A-Za-z0-9_%+.@-]*")


def _email_windows(text: str) -> list[tuple[int, int]]:
    """Disjoint windows, in text order, holding every e-mail address match: each maximal run of
    ``_EMAIL_CHARS`` that holds an "@", plus 2 characters for the lookahead."""
    size = len(text)
    windows: list[tuple[int, int]] = []
    end = 0  # the runs before this are done
    at = text.find("@")
    while at >= 0:
        start = at
        while start > end and text[start - 1] in _EMAIL_CHARS:
            start -= 1
        match = _EMAIL_RUN_END.match(text, at)
        assert match is not None  # it matches the empty string
        end = match.end()
        lo, hi = start, min(end + 2, size)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi)
        else:
            windows.append((lo, hi))
        at = text.find("@", end)
    return windows


def _finditer(
    pattern: re.Pattern[str], text: str, windows: list[tuple[int, int]]
) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, searching only inside ``windows`` (which must hold all its
    matches, see ``_Anchors``)."""
    for start, end in windows:
        yield from pattern.finditer(text, start, end)


@dataclass(frozen=True)
class PiiMatch:
    """One PII span: ``text[start:end]`` is of ``kind`` (``email_address`` ...)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class PiiResult:
    """Outcome of the PII check for one document.

    ``text`` is always the masked text (also when the document is dropped, so that a dropped
    document written out for audit carries no PII). ``counts`` has one entry per kind.
    """

    keep: bool
    reason: str | None
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _phone_ok(span: str) -> bool:
    digits = sum(c.isdigit() for c in span)
    return _PHONE_MIN_DIGITS <= digits <= _PHONE_MAX_DIGITS


def _ipv6_ok(span: str) -> bool:
    if sum(1 for g in span.split(":") if g) < 3:
        return False
    try:
        ipaddress.IPv6Address(span)
    except ValueError:
        return False
    return True


def find_pii(text: str, config: PiiConfig | None = None) -> list[PiiMatch]:
    """All non-overlapping PII spans in ``text``, in order.

    Where spans of different kinds overlap (digits inside an e-mail's local part), the one that
    starts first wins, and of those the longest.
    """
    config = config or PiiConfig()
    found: list[PiiMatch] = []
    if config.emails and "@" in text:
        found += [
            PiiMatch(EMAIL, m.start(), m.end())
            for m in _finditer(_EMAIL_RE, text, _email_windows(text))
        ]
    if config.phone_numbers or config.ip_addresses:
        windows = _DIGIT_ANCHORS.windows(text)
        if config.phone_numbers:
            found += [
                PiiMatch(PHONE, m.start(), m.end())
                for m in _finditer(_PHONE_RE, text, windows)
                if _phone_ok(m.group())
            ]
        if config.ip_addresses:
            found += [PiiMatch(IP, m.start(), m.end()) for m in _finditer(_IPV4_RE, text, windows)]
    if config.ip_addresses and ":" in text:
        windows = _COLON_ANCHORS.windows(text)
        found += [
            PiiMatch(IP, m.start(), m.end())
            for m in _finditer(_IPV6_RE, text, windows)
            if _ipv6_ok(m.group())
        ]
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    result: list[PiiMatch] = []
    last_end = -1
    for m in found:
        if m.start >= last_end:
            result.append(m)
            last_end = m.end
    return result


def scan_pii(text: str, config: PiiConfig | None = None) -> PiiResult:
    """Mask PII in ``text``, or drop the document when there is too much of it."""
    config = config or PiiConfig()
    matches = find_pii(text, config)
    counts = {EMAIL: 0, PHONE: 0, IP: 0}
    pieces: list[str] = []
    pos = 0
    for m in matches:
        counts[m.kind] += 1
        pieces.append(text[pos : m.start])
        pieces.append(_TOKENS[m.kind])
        pos = m.end
    pieces.append(text[pos:])
    masked = "".join(pieces)
    if len(matches) > config.mask_threshold:
        return PiiResult(keep=False, reason=REASON_PII_TOO_MANY, text=masked, counts=counts)
    return PiiResult(keep=True, reason=None, text=masked, counts=counts)
