"""Write tests/vectors/identifiers.json: known answers for identifiers and pseudonyms.

The answers come from a reference written here from the standards' text, not from
``codeengine``, so that the unit tests compare two independent implementations. Invalid cases
are built to fail in exactly one way and carry the reason they must be refused with.

Run: ``.venv/bin/python tools/make_identifier_vectors.py [OUTPUT]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "identifiers.json"
TODAY = date(2024, 6, 1)
# Not secret: a fixed pepper so that pseudonym known answers are reproducible.
TEST_PEPPER = bytes(range(32))

SOURCE = (
    "tools/make_identifier_vectors.py: GB 11643-1999 (resident ID, ISO 7064 MOD 11-2) and "
    "GB 32100-2015 (credit code, MOD 31), reference written from the standards' text; "
    "11010519491231002X is GB 11643's own example; 91110000600037341L is python-stdnum's and "
    "91350100M000100Y43 a published sample. Pseudonym = base64url(HMAC-SHA256(pepper, "
    "domain NUL normalised)[:12]) with domain person/enterprise, alias = alias NUL type NUL value; "
    f"pepper bytes 0..31; today {TODAY.isoformat()}."
)

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def resident_check(body17: str) -> str:
    """GB 11643: weights 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11, 10 written X."""
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def uscc_check(body17: str) -> str:
    """GB 32100: weights 3^i mod 31, check = 31 - sum mod 31, where 31 stands for 0."""
    total = sum(USCC_CHARS.index(c) * pow(3, i, 31) for i, c in enumerate(body17))
    value = 31 - total % 31
    return USCC_CHARS[0 if value == 31 else value]


def resident(region: str, birth: str, seq: str) -> str:
    """A resident ID from its parts, check digit included."""
    return region + birth + seq + resident_check(region + birth + seq)


def uscc(prefix17: str) -> str:
    """A credit code from its first 17 characters, check character included."""
    return prefix17 + uscc_check(prefix17)


def wrong_last(text: str, alphabet: str) -> str:
    """The same text with a different, still well-formed, last character."""
    return text[:-1] + next(c for c in alphabet if c != text[-1])


def full_width(text: str) -> str:
    """The text in full-width forms (U+FF10 and on), as Chinese input methods may type it."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def mac12(message: bytes) -> str:
    """The 16-character pseudonym of a message under the test pepper."""
    digest = hmac.new(TEST_PEPPER, message, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def resident_cases() -> list[dict[str, Any]]:
    """Valid IDs with their normalised form, then one invalid ID for each way to be wrong."""
    standard = "11010519491231002X"
    nanjing = resident("320102", "19900307", "123")
    leap = resident("320583", "20000229", "004")
    earliest = resident("321302", "19000101", "998")
    today = resident("320211", TODAY.strftime("%Y%m%d"), "001")
    taiwan_permit = resident("830000", "19851120", "057")
    valid = [
        ("gb11643-example", standard, standard),
        ("gb11643-example-lower-x-spaces", "  11010519491231002x\t\n", standard),
        ("nanjing", nanjing, nanjing),
        ("leap-day", leap, leap),
        ("born-1900-01-01", earliest, earliest),
        ("born-today", today, today),
        ("taiwan-residence-permit", taiwan_permit, taiwan_permit),
    ]
    cases: list[dict[str, Any]] = [
        {
            "id": f"resident-valid-{name}",
            "op": "resident_id",
            "input": text,
            "today": TODAY.isoformat(),
            "normalised": norm,
            "masked": norm[:6] + "*" * 12,
        }
        for name, text, norm in valid
    ]
    invalid = [
        ("empty", "", "BAD_LENGTH"),
        ("17-chars", standard[:17], "BAD_LENGTH"),
        ("19-chars", standard + "1", "BAD_LENGTH"),
        ("inner-space", standard[:9] + " " + standard[9:17], "BAD_CHARACTERS"),
        ("letter-in-body", "1101051949123100AX", "BAD_CHARACTERS"),
        ("x-not-last", "1101051949123100X2", "BAD_CHARACTERS"),
        ("full-width-digits", full_width(nanjing), "BAD_CHARACTERS"),
        ("arabic-indic-digits", "".join(chr(ord(c) + 0x0630) for c in nanjing), "BAD_CHARACTERS"),
        ("full-width-body", full_width(standard[:17]) + standard[17], "BAD_CHARACTERS"),
        (
            "one-full-width-digit",
            nanjing[:8] + full_width(nanjing[8]) + nanjing[9:],
            "BAD_CHARACTERS",
        ),
        ("region-00", resident("000000", "19900307", "123"), "BAD_REGION"),
        ("region-19", resident("190101", "19900307", "123"), "BAD_REGION"),
        ("region-90", resident("900101", "19900307", "123"), "BAD_REGION"),
        ("not-leap", resident("320102", "19000229", "123"), "BAD_BIRTH_DATE"),
        ("month-13", resident("320102", "19901301", "123"), "BAD_BIRTH_DATE"),
        ("day-00", resident("320102", "19900100", "123"), "BAD_BIRTH_DATE"),
        ("before-1900", resident("320102", "18991231", "123"), "BAD_BIRTH_DATE"),
        ("tomorrow", resident("320102", "20240602", "123"), "BAD_BIRTH_DATE"),
        ("wrong-check", wrong_last(standard, "0123456789X"), "BAD_CHECK_DIGIT"),
        ("wrong-check-nanjing", wrong_last(nanjing, "0123456789X"), "BAD_CHECK_DIGIT"),
    ]
    cases += [
        {
            "id": f"resident-invalid-{name}",
            "op": "resident_id",
            "input": text,
            "today": TODAY.isoformat(),
            "reason": reason,
        }
        for name, text, reason in invalid
    ]
    return cases


def uscc_cases() -> list[dict[str, Any]]:
    """Valid credit codes with their normalised form, then one invalid code for each way."""
    fujian = "91350100M000100Y43"
    beijing = "91110000600037341L"
    nanjing_coop = uscc("93320115MA1XYW0R2")
    national_org = uscc("11100000000013127")
    other = uscc("Y1320500MA1P0W5K0")
    village = uscc("N2320923MF1234567")
    valid = [
        ("published-fujian", fujian, fujian),
        ("stdnum-beijing", beijing, beijing),
        ("lower-case-spaces", " 91350100m000100y43 ", fujian),
        ("farmer-cooperative", nanjing_coop, nanjing_coop),
        ("national-authority", national_org, national_org),
        ("other-authority", other, other),
        ("village-collective", village, village),
    ]
    cases: list[dict[str, Any]] = [
        {
            "id": f"uscc-valid-{name}",
            "op": "uscc",
            "input": text,
            "normalised": norm,
            "masked": norm[:8] + "*" * 10,
        }
        for name, text, norm in valid
    ]
    invalid = [
        ("empty", "", "BAD_LENGTH"),
        ("17-chars", fujian[:17], "BAD_LENGTH"),
        ("19-chars", fujian + "0", "BAD_LENGTH"),
        ("letter-I", "91350100MI00100Y43", "BAD_CHARACTERS"),
        ("letter-O", "91350100MO00100Y43", "BAD_CHARACTERS"),
        ("letter-Z", "91350100MZ00100Y43", "BAD_CHARACTERS"),
        ("letter-S", "91350100MS00100Y43", "BAD_CHARACTERS"),
        ("letter-V", "91350100MV00100Y43", "BAD_CHARACTERS"),
        ("full-width", full_width(fujian), "BAD_CHARACTERS"),
        ("sharp-s", "91350100M000100Y4\u00df", "BAD_CHARACTERS"),
        ("unknown-authority", uscc("B1350100M000100Y4"), "BAD_CHARACTERS"),
        ("unknown-category", uscc("94350100M000100Y4"), "BAD_CHARACTERS"),
        ("other-category-2", uscc("Y2350100M000100Y4"), "BAD_CHARACTERS"),
        ("letter-in-region", uscc("9135A100M000100Y4"), "BAD_CHARACTERS"),
        ("region-99", uscc("91990100M000100Y4"), "BAD_REGION"),
        ("region-00", uscc("91000000M000100Y4"), "BAD_REGION"),
        ("wrong-check", wrong_last(fujian, USCC_CHARS), "BAD_CHECK_DIGIT"),
        ("wrong-check-beijing", wrong_last(beijing, USCC_CHARS), "BAD_CHECK_DIGIT"),
    ]
    cases += [
        {"id": f"uscc-invalid-{name}", "op": "uscc", "input": text, "reason": reason}
        for name, text, reason in invalid
    ]
    return cases


def pseudonym_cases() -> list[dict[str, Any]]:
    """Pseudonyms and alias hashes under the test pepper."""
    pepper = TEST_PEPPER.hex()
    subjects = [
        ("person", "11010519491231002X"),
        ("person", resident("320102", "19900307", "123")),
        ("enterprise", "91350100M000100Y43"),
        ("enterprise", "91110000600037341L"),
    ]
    cases: list[dict[str, Any]] = [
        {
            "id": f"pseudonym-{kind}-{text[:6]}",
            "op": "pseudonym",
            "kind": kind,
            "normalised": text,
            "pepper_hex": pepper,
            "expected": mac12(kind.encode() + b"\x00" + text.encode()),
        }
        for kind, text in subjects
    ]
    aliases = [("ssc", "320102199003071234"), ("essc", "token-\u6c5f\u82cf-01"), ("transit", "0")]
    cases += [
        {
            "id": f"alias-{kind}",
            "op": "alias_hash",
            "alias_type": kind,
            "value": value,
            "pepper_hex": pepper,
            "expected": mac12(b"alias\x00" + kind.encode() + b"\x00" + value.encode()),
        }
        for kind, value in aliases
    ]
    return cases


def main(argv: list[str]) -> None:
    """Write the vectors file, to the path given or to tests/vectors/identifiers.json."""
    output = Path(argv[0]) if argv else OUTPUT
    cases = resident_cases() + uscc_cases() + pseudonym_cases()
    ids = [case["id"] for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    document = {"source": SOURCE, "cases": cases}
    output.write_text(json.dumps(document, indent=2, ensure_ascii=True) + "\n", encoding="ascii")


if __name__ == "__main__":
    main(sys.argv[1:])
