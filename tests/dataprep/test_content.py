"""PII detection, masking and removal (``olmo_dataprep.content``)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from olmo_dataprep import content
from olmo_dataprep.content import (
    EMAIL_TOKEN,
    IP_TOKEN,
    PHONE_TOKEN,
    REASON_PII_TOO_MANY,
    PiiConfig,
    find_pii,
    scan_pii,
)


def kinds_and_spans(text: str) -> list[tuple[str, str]]:
    return [(m.kind, text[m.start : m.end]) for m in find_pii(text)]


@pytest.mark.parametrize(
    "phone",
    [
        "(555) 123-4567",
        "(555)123-4567",
        "+1 555 123 4567",
        "+1-555-123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "1-800-555-1234",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+15551234567",
    ],
)
def test_phone_numbers_found(phone: str) -> None:
    assert kinds_and_spans(f"Call {phone} today.") == [("phone_number", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 there were 1999 cases.",
        "Upgrade to v1.2.3 or version 10.0.19041.1 now.",
        "pi is about 3.14 and e about 2.718.",
        "Order number 5551234567 and 1234567890123456.",
        "Dates 2024-01-15 and 1999-2024.",
        "ISBN 978-0-12-345678-9, SSN-like 123-45-6789.",
        "Mixed separators 555-123.4567 are not a phone here.",
        "Times 12:30:45, std::vector and a::b are not IPv6.",
        "Numbers 999.1.1.1 and 256.10.10.10 and 01.02.03.04 are no IPs.",
        "A five-part 1.2.3.4.5 is not an IP.",
        "No host: user@localhost, no local part: @example.com.",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail a@b.co now", "a@b.co"),
        ("mail john.doe+tag@mail.example.co.uk.", "john.doe+tag@mail.example.co.uk"),
        ("<first_last@sub-domain.example.org>", "first_last@sub-domain.example.org"),
    ],
)
def test_emails(text: str, expected: str) -> None:
    assert kinds_and_spans(text) == [("email_address", expected)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host 192.168.0.1 is up", "192.168.0.1"),
        ("edges 0.0.0.0", "0.0.0.0"),
        ("broadcast 255.255.255.255.", "255.255.255.255"),
        ("v6 2001:db8::1 too", "2001:db8::1"),
        ("link fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
    ],
)
def test_ip_addresses(text: str, expected: str) -> None:
    assert kinds_and_spans(text) == [("ip_address", expected)]


def test_invalid_octet_not_matched_anywhere() -> None:
    # Not even the valid-looking tail "99.1.1.1" / "9.1.1.1".
    assert find_pii("from 999.1.1.1 and 1.1.1.999") == []


def test_digits_inside_email_count_once_as_email() -> None:
    assert kinds_and_spans("write to 555-123-4567@example.com") == [
        ("email_address", "555-123-4567@example.com")
    ]


def test_mask_up_to_threshold_exact_output() -> None:
    text = (
        "Contact jane@example.com or (555) 123-4567.\n"
        "Server 10.0.0.1, backup 10.0.0.2, fax +1 555 987 6543."
    )
    result = scan_pii(text)
    assert result.keep
    assert result.reason is None
    assert result.counts == {"email_address": 1, "phone_number": 2, "ip_address": 2}
    assert result.total == 5
    assert result.text == (
        f"Contact {EMAIL_TOKEN} or {PHONE_TOKEN}.\n"
        f"Server {IP_TOKEN}, backup {IP_TOKEN}, fax {PHONE_TOKEN}."
    )


def test_more_than_threshold_drops_document() -> None:
    # Two of each kind: no kind alone exceeds 5, the total (6) does.
    text = "a@x.org b@y.org 555-123-4567 555-123-4568 10.1.1.1 10.1.1.2"
    result = scan_pii(text)
    assert not result.keep
    assert result.reason == REASON_PII_TOO_MANY
    assert result.total == 6
    assert "@" not in result.text  # the dropped text is masked as well


def test_threshold_and_switches_configurable() -> None:
    text = "a@x.org 10.1.1.1"
    assert not scan_pii(text, PiiConfig(mask_threshold=1)).keep
    only_ip = scan_pii(text, PiiConfig(emails=False))
    assert only_ip.keep
    assert only_ip.text == f"a@x.org {IP_TOKEN}"
    assert only_ip.counts["email_address"] == 0


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        PiiConfig(mask_threshold=-1)
    with pytest.raises(ValidationError):
        PiiConfig(mask_threshold="5")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PiiConfig(unknown=True)  # type: ignore[call-arg]


_octet = st.integers(0, 255)


@settings(max_examples=200, deadline=None)
@given(st.tuples(_octet, _octet, _octet, _octet))
def test_every_valid_ipv4_masked(octets: tuple[int, int, int, int]) -> None:
    ip = ".".join(map(str, octets))
    assert scan_pii(f"peer {ip} connected").text == f"peer {IP_TOKEN} connected"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 10**20).map(str),
            st.floats(0, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}"),
            st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 9999)).map(
                lambda t: "v{}.{}.{}".format(*t)
            ),
        ),
        max_size=8,
    )
)
def test_plain_numbers_never_pii(tokens: list[str]) -> None:
    # Comma-separated: "555 123 4567" joined by spaces would rightly be a phone number.
    text = ", ".join(tokens)
    assert scan_pii(text).text == text


# --- windowed scanning against a scan of the whole text ------------------------------------------
#
# ``find_pii`` runs each pattern only in windows around its anchors (see the module docstring);
# the matches must be exactly those of ``pattern.finditer`` over the whole text.

WINDOWED = [
    (content._PHONE_RE, content._DIGIT_ANCHORS.windows),
    (content._IPV4_RE, content._DIGIT_ANCHORS.windows),
    (content._IPV6_RE, content._COLON_ANCHORS.windows),
    (content._EMAIL_RE, content._email_windows),
]
# Pieces that make (and almost make) every kind of match, separators, and other characters.
PIECES = [
    *"0123456789", "1", "5", "55", "555", "4567", "+", "+1", "+44", "(", ")", "(555)", " ", " ",
    "-", ".", "..", ":", "::", "a", "f", "F", "x", "@", "_", "%", "\n", "\u0663", "\u00e9", "#",
    "192.168.", "10.0.0.", "255.", "fe80:", "db8:", "2001:", "user", "@example.com", ".co", ".",
    "a@b.co", "a.b@c-d.org", "a" * 50, "1" * 20, " " * 45, "-" * 10,
]  # fmt: skip


def reference_find_pii(text: str, config: PiiConfig) -> list[tuple[str, int, int]]:
    """The direct implementation: every pattern over the whole text."""
    found = []
    if config.emails:
        found += [("email_address", *m.span()) for m in content._EMAIL_RE.finditer(text)]
    if config.phone_numbers:
        found += [
            ("phone_number", *m.span())
            for m in content._PHONE_RE.finditer(text)
            if content._phone_ok(m.group())
        ]
    if config.ip_addresses:
        found += [("ip_address", *m.span()) for m in content._IPV4_RE.finditer(text)]
        found += [
            ("ip_address", *m.span())
            for m in content._IPV6_RE.finditer(text)
            if content._ipv6_ok(m.group())
        ]
    found.sort(key=lambda m: (m[1], -(m[2] - m[1])))
    result, last_end = [], -1
    for m in found:
        if m[1] >= last_end:
            result.append(m)
            last_end = m[2]
    return result


def assert_windowed_scan_is_exact(text: str) -> None:
    for pattern, windows in WINDOWED:
        spans = [m.span() for m in content._finditer(pattern, text, windows(text))]
        assert spans == [m.span() for m in pattern.finditer(text)], pattern.pattern
    for config in (PiiConfig(), PiiConfig(emails=False), PiiConfig(phone_numbers=False)):
        found = [(m.kind, m.start, m.end) for m in find_pii(text, config)]
        assert found == reference_find_pii(text, config)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=80).map("".join))
def test_windowed_scan_matches_a_whole_text_scan(text: str) -> None:
    assert_windowed_scan_is_exact(text)


def test_windowed_scan_on_pii_dense_and_pii_free_text() -> None:
    rng = random.Random(5)
    texts = [
        "Call (555) 123-4567 or +44 20 7946 0958, mail a.b@c.org; hosts 10.0.0.1 and fe80::1.",
        "In 2024 the 3.5 release fixed 12:30:45 timestamps in std::map<int, x> " * 20,
    ]
    for _ in range(300):
        texts.append("".join(rng.choice(PIECES) for _ in range(rng.randint(50, 400))))
    found = 0
    for text in texts:
        assert_windowed_scan_is_exact(text)
        found += bool(find_pii(text))
    assert found > 200  # the texts do hold matches of every kind, near window edges too


def test_window_margins_cover_the_longest_matches() -> None:
    # ``_Anchors.longest`` must be at least the pattern's maximum width as ``re`` computes it.
    parse = re._parser.parse  # private, but the width it computes is what re uses
    width = {p: parse(p.pattern).getwidth()[1] for p, _ in WINDOWED}
    assert content._DIGIT_ANCHORS.longest >= max(width[content._PHONE_RE], width[content._IPV4_RE])
    assert content._COLON_ANCHORS.longest >= width[content._IPV6_RE]
