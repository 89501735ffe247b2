"""Micro-benchmarks of the other per-request work: identifiers, pseudonyms, QR rendering.

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

from codeengine.identifiers import parse_identifier
from codeengine.keyring import Keyring
from codeengine.model import CodeKind, Colour
from codeengine.pseudonym import pseudonym
from codeengine.qr import QRFormat, render
from codeengine.secret import Secret
from codeengine.suites import ED25519, deterministic_random
from codeengine.token import Claims, encode

NOW = 1_800_000_000
PEPPER = Secret(b"p" * 32)
RESIDENT_ID = "11010519491231002X"  # the GB 11643 standard's own example
TODAY = date(2026, 11, 27)
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
