"""ETags of the published lists and the If-None-Match comparison (RFC 9110 §13.1.2)."""

from __future__ import annotations

import pytest

from codeengine.code.keyring import Keyring
from codeengine.code.signedlist import ListKind
from codeengine.code.suites import ED25519, deterministic_random
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations
from codeengine.web.trust import PublishedLists, etag_of, not_modified

TAG = etag_of(b"the list")


def test_an_etag_is_a_quoted_digest_that_changes_with_the_bytes() -> None:
    assert TAG.startswith('"') and TAG.endswith('"') and len(TAG) == 24
    assert etag_of(b"the list") == TAG
    assert etag_of(b"the list.") != TAG
    assert etag_of(b"the list", weak=True) == f"W/{TAG}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        (TAG, True),
        (f"W/{TAG}", True),
        (f'"other", {TAG}', True),
        (f'"other",{TAG}  ', True),
        ("*", True),
        ('"other"', False),
        (TAG[:-1], False),
        (TAG.strip('"'), False),
    ],
    ids=["absent", "empty", "same", "weak-form", "in-a-list", "no-space", "star", "other",
         "unterminated", "unquoted"],
)  # fmt: skip
def test_if_none_match_compares_weakly(header: str | None, expected: bool) -> None:
    assert not_modified(header, TAG) is expected
    assert not_modified(header, f"W/{TAG}") is expected


def test_a_published_form_is_made_once_per_list_object() -> None:
    ring = Keyring.generate_at(1_800_000_000, ED25519, deterministic_random(b"published"))
    trust = TrustList.from_keyring(ring)
    published = PublishedLists()
    first = published.trust(trust)
    assert first.body == trust.to_json().encode()
    assert first.etag == etag_of(first.body)
    assert published.trust(trust) is first, "the same list: nothing made again"
    again = published.trust(TrustList.from_keyring(ring))
    assert again is not first and again.etag == first.etag, "equal lists, equal tags"

    document = b"\xd2\x84signed"
    signed = published.signed(ListKind.TRUST, document)
    assert published.signed(ListKind.TRUST, document) is signed
    assert signed.content_type == "application/cose"

    revoked = Revocations(codes=frozenset({b"\x01" * 6}))
    head, etag = published.revocations(revoked)
    assert head == b'{"codes":["010101010101"],"keys":[],"as_of":'
    assert etag.startswith("W/")
    assert published.revocations(Revocations()) != (head, etag)
