"""Known answers for signed lists, made by tools/make_list_vectors.py without codeengine."""

from __future__ import annotations

import pytest

from codeengine.code.errors import ListRefused, Reason
from codeengine.code.signedlist import ListKind, read_list, revocations_from_json, verify_list_at
from codeengine.code.trustlist import TrustList
from tests.vectors_loader import Case, case_id, cases, generator, load, vectors_path

make_list_vectors = generator("make_list_vectors")

DOCUMENT = load("signed_lists")
ANCHORS = TrustList.from_jwks(DOCUMENT["anchors"])


def test_committed_file_is_what_the_generator_makes() -> None:
    regenerated = make_list_vectors.render(make_list_vectors.build())
    assert regenerated == vectors_path("signed_lists").read_text(encoding="ascii")


def test_every_refusal_of_a_terminal_has_a_case() -> None:
    listed = {case["expect"] for case in DOCUMENT["cases"]}
    assert listed == {"VALID"} | {r.value for r in Reason if r.value.startswith("LIST_")}


def _verdict(case: Case) -> str:
    held = read_list(bytes.fromhex(case["held_hex"])) if "held_hex" in case else None
    try:
        signed = verify_list_at(
            bytes.fromhex(case["document_hex"]),
            ListKind[case["kind"].upper()],
            ANCHORS,
            case["now"],
            held=held,
        )
    except ListRefused as refused:
        return refused.reason.value
    assert (signed.seq, signed.content.decode()) == (case["seq"], case["content"])
    if signed.kind is ListKind.TRUST:
        TrustList.from_json(signed.content)
    else:
        revocations_from_json(signed.content)
    return "VALID"


@pytest.mark.parametrize("case", cases("signed_lists"), ids=case_id)
def test_each_case_gets_its_answer(case: Case) -> None:
    assert _verdict(case) == case["expect"], case["why"]
