"""Micro-benchmarks of the other per-request work: identifiers, pseudonyms, QR, rules, rows.

``make bench`` times them; under ``--benchmark-disable`` each runs once and its assert checks
the result (a QR image decodes back to its token with a real decoder).
"""

from __future__ import annotations

import io
from datetime import date

import pytest
import zxingcpp
from PIL import Image
from pytest_benchmark.fixture import BenchmarkFixture

from codeengine.code.identifiers import parse_identifier
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.pseudonym import pseudonym
from codeengine.code.qr import QRFormat, render
from codeengine.code.rules import effective_colour_at, load_rules, merge_risk_at
from codeengine.code.secret import Secret
from codeengine.code.suites import ED25519, deterministic_random
from codeengine.code.token import Claims, encode
from codeengine.store.batches import RiskRow, RowParser

NOW = 1_800_000_000
PEPPER = Secret(b"p" * 32)
RESIDENT_ID = "11010519491231002X"  # the GB 11643 standard's own example
TODAY = date(2027, 1, 15)  # the day of NOW (UTC+8)
TOKEN = encode(
    Claims(NOW + 120, NOW, b"\x01" * 6, bytes(range(12)), CodeKind.HEALTH, 320100, Colour.GREEN, 7),
    Keyring.generate_at(NOW - 60, ED25519, deterministic_random(b"qr")).current,
)


def test_parse_resident_id(benchmark: BenchmarkFixture) -> None:
    identifier = benchmark(parse_identifier, "person", RESIDENT_ID, TODAY)
    assert identifier.kind == "person"


def test_pseudonym(benchmark: BenchmarkFixture) -> None:
    identifier = parse_identifier("person", RESIDENT_ID, TODAY)
    subject = benchmark(pseudonym, identifier, PEPPER)
    assert len(subject) == 16 and RESIDENT_ID not in subject
    assert pseudonym(identifier, Secret(b"q" * 32)) != subject, "the pepper keys the pseudonym"


@pytest.mark.parametrize("fmt", [QRFormat.PNG, QRFormat.SVG])
def test_render_qr(benchmark: BenchmarkFixture, fmt: QRFormat) -> None:
    image = benchmark(render, TOKEN, fmt)
    if fmt is QRFormat.PNG:
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(image)))
        assert [barcode.text for barcode in found] == [TOKEN]
    else:
        assert image.startswith(b"<?xml") or image.startswith(b"<svg")


def test_rules_merge_a_record(benchmark: BenchmarkFixture) -> None:
    rules = load_rules()
    risk = ((Colour.YELLOW, NOW + 5 * 86400),)
    merged = benchmark(merge_risk_at, risk, rules.rules["positive"], NOW - 86400, NOW)
    assert merged == ((Colour.YELLOW, NOW + 5 * 86400), (Colour.RED, NOW + 13 * 86400))


def test_rules_colour_at_read_time(benchmark: BenchmarkFixture) -> None:
    risk = ((Colour.YELLOW, NOW + 100), (Colour.RED, NOW + 50))
    assert benchmark(effective_colour_at, Colour.GREEN, risk, None, NOW + 60) is Colour.YELLOW


def test_batch_row_check(benchmark: BenchmarkFixture) -> None:
    parser = RowParser("csv", load_rules(), PEPPER, NOW, TODAY)
    parser.feed(1, b"identifier,record_type,event_time,source,city\n")
    line = f"{RESIDENT_ID},positive,{NOW - 86400},cdc,320100\n".encode()
    row = benchmark(parser.feed, 2, line)
    assert isinstance(row, RiskRow) and row.record_type == "positive"
