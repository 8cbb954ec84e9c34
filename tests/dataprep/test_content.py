"""PII detection, masking and removal (``olmo_dataprep.content``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

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
