"""``python -m verifier.offline``: verify a code given as text or as a QR image, offline.

    python -m verifier.offline --trust trust.json [--revocations rev.json] CODE_TEXT
    python -m verifier.offline --trust trust.json --image code.png
    python -m verifier.offline --trust trust.json --fetched-at 1800000000 --at 1800000060 CODE
    python -m verifier.offline --anchor trust-anchor.pub.json \
        --trust trust.cose --revocations revocations.cose CODE_TEXT

Prints the verdict as JSON; exits 0 for a valid code, 1 for a refused one, 2 for bad usage,
3 for a refused list. Without ``--anchor`` the trust list is the JSON of ``GET /v1/trust``;
with it (repeat it during an anchor rotation), ``--trust`` and ``--revocations`` are the signed
lists of ``GET /v1/trust/signed`` and ``GET /v1/revocations/signed``, as fetched, and a list
that is unsigned, signed by another key, altered or expired is refused with its reason.
``--at`` verifies as of another time than now: a scan rechecked afterwards, or a known-answer
vector.

It imports the pure layer alone (and the QR reader only for ``--image``), so it runs where
none of the services' server libraries is installed (docs/sdk.md).

With ``--dcc-trust`` (the DCC signer certificates) or ``--shc-trust`` (the SMART Health Card
issuers' key sets and revocation lists), an ``HC1:`` or ``shc:/`` text is verified too, and
shown in the colour ``--credentials`` (default: the shipped ``credentials.toml``) gives its type
(docs/formats.md).
"""

from __future__ import annotations

__all__ = ["LIST_REFUSED_EXIT", "main", "read_qr"]

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from codeengine.code.errors import KeyringError, ListRefused
from codeengine.code.foreign import ForeignTrust
from codeengine.code.shipped import shipped
from verifier.offline.sdk import (
    DEFAULT_MAX_AGE_S,
    CachedList,
    OfflineVerifier,
    load_anchors,
    load_foreign_trust,
)

LIST_REFUSED_EXIT = 3


def read_qr(path: Path) -> str:
    """The text of the one QR code in an image file, decoded with zxing-cpp."""
    import zxingcpp
    from PIL import Image

    with Image.open(path) as image:
        found = [
            r for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode
        ]
    if len(found) != 1:
        raise ValueError(f"expected one QR code in the image, found {len(found)}")
    return str(found[0].text)


def main(argv: Sequence[str] | None = None) -> int:
    """Verify one code offline and print the verdict."""
    parser = argparse.ArgumentParser(prog="python -m verifier.offline", description=__doc__)
    parser.add_argument("code", nargs="?", help="the scanned text")
    parser.add_argument("--image", type=Path, help="a PNG/JPEG with one QR code, instead")
    parser.add_argument(
        "--trust", type=Path, required=True, help="trust list (JWKS JSON, or signed with --anchor)"
    )
    parser.add_argument("--revocations", type=Path, help="revocation list (signed with --anchor)")
    parser.add_argument(
        "--anchor",
        type=Path,
        action="append",
        help="trust-anchor public keys (JWKS); the lists must then be the signed ones",
    )
    parser.add_argument(
        "--fetched-at",
        type=int,
        default=None,
        help="when the lists were fetched (epoch s; default: the trust file's mtime)",
    )
    parser.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE_S)
    parser.add_argument(
        "--at",
        type=int,
        default=None,
        help="verify as of this time (epoch s; default: now), to recheck a scan afterwards",
    )
    parser.add_argument("--dcc-trust", type=Path, help="DCC signer certificates (JSON)")
    parser.add_argument("--shc-trust", type=Path, help="SMART Health Card issuers (JSON)")
    parser.add_argument(
        "--credentials", type=Path, help="credential colour policy (TOML; default: shipped)"
    )
    args = parser.parse_args(argv)
    if (args.code is None) == (args.image is None):
        parser.error("give the code text or --image, not both")
    if args.anchor and args.revocations is None:
        parser.error("--anchor needs the signed --revocations too")
    anchors = None
    foreign: ForeignTrust | None = None
    try:
        text = read_qr(args.image) if args.image else args.code
        if args.dcc_trust or args.shc_trust:
            foreign = load_foreign_trust(
                (args.credentials or shipped("credentials.toml")).read_text(encoding="utf-8"),
                dcc_trust=args.dcc_trust.read_bytes() if args.dcc_trust else None,
                shc_trust=args.shc_trust.read_bytes() if args.shc_trust else None,
            )
        fetched_at = args.fetched_at or int(args.trust.stat().st_mtime)
        if args.anchor:
            anchors = load_anchors(path.read_bytes() for path in args.anchor)
            cached = CachedList.from_signed(
                args.trust.read_bytes(), args.revocations.read_bytes(), anchors, fetched_at
            )
        else:
            revocations = args.revocations.read_text() if args.revocations else None
            cached = CachedList.from_documents(args.trust.read_text(), revocations, fetched_at)
    except ListRefused as exc:
        refusal = {"valid": False, "reason": exc.reason.value, "detail": exc.detail}
        print(json.dumps(refusal, indent=2))
        return LIST_REFUSED_EXIT
    except (OSError, ValueError, KeyringError) as exc:
        print(f"verifier.offline: {exc}", file=sys.stderr)
        return 2
    at = args.at
    clock = time.time if at is None else lambda: float(at)
    verifier = OfflineVerifier(
        cached, max_age_s=args.max_age, clock=clock, anchors=anchors, foreign=foreign
    )
    verdict = verifier.verify(text)
    print(json.dumps(verdict.to_json(), indent=2))
    return 0 if verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
