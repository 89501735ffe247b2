"""Properties of the codec: round trips, and that nothing but a valid code is ever accepted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.base45 import ALPHABET, b45decode
from codeengine.code.errors import MalformedCode, Reason, VerificationError
from codeengine.code.keyring import Keyring
from codeengine.code.model import CITIES, CodeKind, Colour
from codeengine.code.suites import ED25519, ES256, deterministic_random
from codeengine.code.token import (
    DEFAULT_SKEW_S,
    PREFIX,
    Claims,
    DecodedCode,
    _decode_fast,
    _decode_general,
    check_signature_at,
    check_window_at,
    decode,
    decode_cose,
    encode,
    encode_cose,
    verify_at,
)
from codeengine.code.trustlist import TrustList

NOW = 1_800_000_000
VERIFICATION_REASONS = frozenset(
    {
        Reason.MALFORMED,
        Reason.UNSUPPORTED_ALG,
        Reason.UNKNOWN_KID,
        Reason.BAD_SIGNATURE,
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
    }
)
# Keys valid for all time, so that only the codec decides.
ED_RING = Keyring.generate_at(0, ED25519, deterministic_random(b"p-ed"), lifetime_s=2**62)
ES_RING = Keyring.generate_at(0, ES256, deterministic_random(b"p-es"), lifetime_s=2**62)
TRUST = TrustList.of([ED_RING.current.trusted, ES_RING.current.trusted])
CLAIMS = Claims(
    exp=NOW + 120,
    iat=NOW,
    cti=bytes.fromhex("0102030405ff"),
    subject=bytes(range(100, 112)),
    kind=CodeKind.HEALTH,
    city=320500,
    colour=Colour.YELLOW,
    version=65535,
)
ED_TOKEN = encode(CLAIMS, ED_RING.current)
ES_TOKEN = encode(CLAIMS, ES_RING.current)
ED_COSE = encode_cose(CLAIMS, ED_RING.current)
# Characters beyond the base45 alphabet that a scanner or a person could produce.
OTHER_CHARS = "az\n\t\x00=_~#é中\u200b\U0001f600"
assert not set(OTHER_CHARS) & set(ALPHABET)

FEW = settings(max_examples=60, deadline=None, database=None)
SOME = settings(max_examples=250, deadline=None, database=None)


def _refusal(token: str) -> Reason:
    """The reason verify_at refuses a token; fails the test if it accepts it."""
    try:
        verify_at(token, TRUST, NOW)
    except VerificationError as exc:
        assert exc.reason in VERIFICATION_REASONS
        return exc.reason
    raise AssertionError(f"accepted an altered token: {token!r}")


def _cose_refusal(data: bytes) -> Reason:
    """verify_at's steps 3-8 on COSE bytes; fails the test if they accept them."""
    try:
        decoded = decode_cose(data)
        check_signature_at(decoded, TRUST, NOW)
        check_window_at(decoded.claims, NOW)
    except VerificationError as exc:
        assert exc.reason in VERIFICATION_REASONS
        return exc.reason
    raise AssertionError(f"accepted altered COSE bytes: {data.hex()}")


def claims_strategy(max_time: int = 2**64 - 1) -> st.SearchStrategy[Claims]:
    """Any valid claims, with times up to ``max_time``."""
    return st.builds(
        lambda times, cti, subject, kind, city, colour, version: Claims(
            exp=max(times),
            iat=min(times),
            cti=cti,
            subject=subject,
            kind=kind,
            city=city,
            colour=colour,
            version=version,
        ),
        st.tuples(st.integers(0, max_time), st.integers(0, max_time)),
        st.binary(min_size=6, max_size=6),
        st.binary(min_size=12, max_size=12),
        st.sampled_from(CodeKind),
        st.sampled_from(sorted(CITIES)),
        st.sampled_from(Colour),
        st.integers(0, 2**32 - 1),
    )


@SOME
@given(claims=claims_strategy(), use_es256=st.booleans())
def test_encode_decode_round_trip(claims: Claims, use_es256: bool) -> None:
    key = (ES_RING if use_es256 else ED_RING).current
    token = encode(claims, key)
    decoded = decode(token)
    assert decoded.claims == claims
    assert (decoded.alg, decoded.kid) == (key.alg, key.kid)
    assert decode_cose(encode_cose(claims, key)).claims == claims


@FEW
@given(claims=claims_strategy(max_time=2**61), use_es256=st.booleans(), data=st.data())
def test_verify_round_trip_inside_the_window(
    claims: Claims, use_es256: bool, data: st.DataObject
) -> None:
    key = (ES_RING if use_es256 else ED_RING).current
    now = data.draw(st.integers(max(0, claims.iat - DEFAULT_SKEW_S), claims.exp + DEFAULT_SKEW_S))
    assert verify_at(encode(claims, key), TRUST, now) == claims


def test_every_single_character_substitution_is_refused() -> None:
    for position, original in enumerate(ED_TOKEN):
        for replacement in ALPHABET + OTHER_CHARS:
            if replacement == original:
                continue
            altered = ED_TOKEN[:position] + replacement + ED_TOKEN[position + 1 :]
            reason = _refusal(altered)
            if position < len(PREFIX) or replacement in OTHER_CHARS:
                assert reason == Reason.MALFORMED


@FEW
@given(data=st.data(), replacement=st.characters())
def test_es256_single_character_substitutions_are_refused(
    data: st.DataObject, replacement: str
) -> None:
    position = data.draw(st.integers(0, len(ES_TOKEN) - 1))
    if ES_TOKEN[position] != replacement:
        _refusal(ES_TOKEN[:position] + replacement + ES_TOKEN[position + 1 :])


@pytest.mark.parametrize("token", [ED_TOKEN, ES_TOKEN], ids=["Ed25519", "ES256"])
def test_every_truncation_is_refused_as_malformed(token: str) -> None:
    for length in range(len(token)):
        assert _refusal(token[:length]) == Reason.MALFORMED


def _regions(cose: bytes) -> dict[str, range]:
    """Byte ranges of the parts of a canonical Ed25519/ES256 code, from its own layout."""
    protected_start = 3  # tag, array head, bstr head
    kid_start = protected_start + 5  # map head, 1, alg, 4, bstr head
    decoded = decode_cose(cose)
    payload_start = cose.index(decoded.payload)
    cti_start = payload_start + decoded.payload.index(b"\x07\x46") + 2
    subject_start = payload_start + decoded.payload.index(b"\x20\x4c") + 2
    return {
        "kid": range(kid_start, kid_start + 8),
        "cti": range(cti_start, cti_start + 6),
        "subject": range(subject_start, subject_start + 12),
        "signature": range(len(cose) - 64, len(cose)),
    }


def test_every_single_byte_mutation_of_the_cose_bytes_is_refused() -> None:
    regions = _regions(ED_COSE)
    expected = {
        "kid": Reason.UNKNOWN_KID,
        "cti": Reason.BAD_SIGNATURE,
        "subject": Reason.BAD_SIGNATURE,
        "signature": Reason.BAD_SIGNATURE,
    }
    for position in range(len(ED_COSE)):
        region = next((name for name, span in regions.items() if position in span), None)
        for value in range(256):
            if value == ED_COSE[position]:
                continue
            altered = ED_COSE[:position] + bytes((value,)) + ED_COSE[position + 1 :]
            reason = _cose_refusal(altered)
            if region is not None:
                assert reason == expected[region], (position, value)


@FEW
@given(data=st.data())
def test_es256_single_byte_mutations_are_refused(data: st.DataObject) -> None:
    cose = decode(ES_TOKEN)
    raw = b45decode(ES_TOKEN[len(PREFIX) :])
    assert decode_cose(raw) == cose
    position = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]))
    _cose_refusal(raw[:position] + bytes((value,)) + raw[position + 1 :])


@SOME
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_verification_errors(text: str) -> None:
    try:
        verify_at(text, TRUST, NOW)
    except VerificationError as exc:
        assert exc.reason in VERIFICATION_REASONS


@SOME
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_arbitrary_base45_after_the_prefix_raises_only_malformed(body: str) -> None:
    with pytest.raises(MalformedCode):
        verify_at(PREFIX + body, TRUST, NOW)


@SOME
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_malformed(data: bytes) -> None:
    with pytest.raises(MalformedCode):
        decode_cose(data)


# A second reading of the format, through cbor2: decode, check the structure and exact types,
# re-encode canonically and compare. decode_cose must agree with it on every input.


def _canonical(data: object) -> Any:
    if type(data) is not bytes:
        raise ValueError("not a byte string")
    value = cbor2.loads(data)
    if cbor2.dumps(value, canonical=True) != data:
        raise ValueError("not canonical")
    return value


def _uint(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError("not an unsigned integer")
    return value


def _sized(value: object, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise ValueError("wrong byte string")
    return value


def _exact_map(value: object, keys: set[int]) -> Mapping[int, Any]:
    if not isinstance(value, Mapping) or any(type(key) is not int for key in value):
        raise ValueError("not a map with integer keys")
    if set(value) != keys:
        raise ValueError("wrong keys")
    return value


def _reference_decode(data: bytes) -> tuple[int, bytes, Claims] | None:
    try:
        top = _canonical(data)
        if not isinstance(top, cbor2.CBORTag) or top.tag != 18:
            return None
        value = top.value
        if not isinstance(value, list | tuple) or len(value) != 4:
            return None
        protected, unprotected, payload, _signature = value
        if type(_signature) is not bytes or not isinstance(unprotected, Mapping) or unprotected:
            return None
        header = _exact_map(_canonical(protected), {1, 4})
        if type(header[1]) is not int:
            return None
        claims = _exact_map(_canonical(payload), {4, 6, 7, -1, -2})
        status = claims[-2]
        if not isinstance(status, list | tuple) or len(status) != 4:
            return None
        kind, city, colour, version = (_uint(item) for item in status)
        return (
            header[1],
            _sized(header[4], 8),
            Claims(
                exp=_uint(claims[4]),
                iat=_uint(claims[6]),
                cti=_sized(claims[7], 6),
                subject=_sized(claims[-1], 12),
                kind=CodeKind(kind),
                city=city * 100 if city * 100 in CITIES else -1,
                colour=Colour(colour),
                version=version,
            ),
        )
    except Exception:  # The reference refuses whatever it cannot read, however it fails.
        return None


def _ours(data: bytes) -> tuple[int, bytes, Claims] | None:
    try:
        decoded = decode_cose(data)
    except MalformedCode:
        return None
    return decoded.alg, decoded.kid, decoded.claims


def test_reference_reads_a_valid_code() -> None:
    assert _reference_decode(ED_COSE) == _ours(ED_COSE) is not None


@SOME
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]), st.integers(0), st.integers(0, 255)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_decoder_agrees_with_the_cbor2_reference_on_edited_bytes(
    edits: list[tuple[str, int, int]],
) -> None:
    data = bytearray(ED_COSE)
    for operation, where, value in edits:
        position = where % (len(data) + 1)
        if operation == "insert":
            data.insert(position, value)
        elif position < len(data):
            if operation == "set":
                data[position] = value
            else:
                del data[position]
    assert _ours(bytes(data)) == _reference_decode(bytes(data))


_LEAF = (
    st.integers(-(2**64), 2**64 - 1)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
    | st.binary(max_size=13)
    | st.text(max_size=4)
)
_CLAIM_VALUE = _LEAF | st.lists(_LEAF, max_size=5)
_VALID_PAYLOAD = cbor2.loads(decode_cose(ED_COSE).payload)


@SOME
@given(
    changes=st.dictionaries(
        st.sampled_from([4, 6, 7, -1, -2, 1, 8, -3]) | _LEAF.filter(lambda k: k is not None),
        _CLAIM_VALUE | st.none(),
        max_size=3,
    ),
    canonical=st.booleans(),
)
def test_decoder_agrees_with_the_cbor2_reference_on_odd_claims(
    changes: dict[Any, Any], canonical: bool
) -> None:
    claims = {key: value for key, value in {**_VALID_PAYLOAD, **changes}.items()}
    try:
        payload = cbor2.dumps(claims, canonical=canonical)
    except (cbor2.CBOREncodeError, TypeError):
        return
    protected = decode_cose(ED_COSE).protected
    data = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, bytes(64)]), canonical=True)
    assert _ours(data) == _reference_decode(data)


def _general_or_reason(data: bytes) -> DecodedCode | Reason:
    try:
        return _decode_general(data)
    except VerificationError as exc:
        return exc.reason


@settings(max_examples=150, deadline=None)
@given(
    claims=claims_strategy(max_time=2**33),
    use_es256=st.booleans(),
    position=st.integers(0, 200),
    byte=st.integers(0, 255),
)
def test_fast_path_agrees_with_the_general_parser(
    claims: Claims, use_es256: bool, position: int, byte: int
) -> None:
    """The fixed-offset fast path accepts a subset of what the general parser accepts, equally."""
    cose = encode_cose(claims, ES_RING.current if use_es256 else ED_RING.current)
    for data in (cose, _mutated(cose, position % len(cose), byte), cose[: position % len(cose)]):
        fast = _decode_fast(data)
        if fast is not None:
            assert fast == _general_or_reason(data)
    if 1 << 16 <= claims.iat and claims.exp < 1 << 32:
        assert _decode_fast(cose) is not None, "the usual layout takes the fast path"


def _mutated(data: bytes, position: int, byte: int) -> bytes:
    return data[:position] + bytes([byte]) + data[position + 1 :]
