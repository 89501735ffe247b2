"""The trust anchor's commands: show the public anchors terminals need, rotate the anchor.

    codeengine keys anchor                          print the public anchors (JWKS)
    codeengine keys rotate-anchor --activate-in-s N [--overlap-s S]

The anchor file (``keys.trust_anchor_file``) is a keyring JWKS like the signing keyring's: the
key valid now signs the lists, a staged next key takes over at its ``nbf``. Its public half is
kept beside it as ``NAME.pub.json``, which is what terminals are configured with.
"""

from __future__ import annotations

__all__ = ["add_anchor_commands"]

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from codeengine.code.signedlist import ANCHOR_LIFETIME_S
from codeengine.code.suites import b64url_encode
from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import anchor_public_path, load_trust_anchor, write_trust_anchor
from codeengine.ops.commands import config_path
from codeengine.settings import load_settings


def _anchor_path(args: argparse.Namespace) -> Path:
    return Path(load_settings(config_path(args)).keys.trust_anchor_file)


def _cmd_anchor(args: argparse.Namespace) -> int:
    # An anchor past its validity verifies nothing more: terminals need not keep it.
    anchors = load_trust_anchor(_anchor_path(args)).prune_at(int(time.time()))
    print(json.dumps(TrustList.from_keyring(anchors).to_jwks(), indent=2))
    return 0


def _cmd_rotate_anchor(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args))
    path = Path(settings.keys.trust_anchor_file)
    now = int(time.time())
    overlap_s = settings.codes.signed_list_ttl_s if args.overlap_s is None else args.overlap_s
    anchors = load_trust_anchor(path).prune_at(now)
    rotated = anchors.rotate_at(
        now,
        settings.crypto.selected().suite,
        overlap_s,
        os.urandom,
        lifetime_s=ANCHOR_LIFETIME_S,
        activate_in_s=args.activate_in_s,
    )
    write_trust_anchor(path, rotated)
    new = rotated.next or rotated.current
    answer = {
        "kid": b64url_encode(new.kid),
        "signs_from": new.not_before,
        "public_anchors": str(anchor_public_path(path)),
    }
    print(json.dumps(answer, indent=2))
    return 0


def add_anchor_commands(keys_commands: Any) -> None:
    """Add ``anchor`` and ``rotate-anchor`` under ``codeengine keys``."""
    anchor = keys_commands.add_parser(
        "anchor", help="print the trust anchor's public keys, as terminals are configured"
    )
    anchor.set_defaults(func=_cmd_anchor)
    rotate = keys_commands.add_parser(
        "rotate-anchor",
        help="add a new trust anchor that signs the lists from --activate-in-s on",
    )
    rotate.add_argument(
        "--activate-in-s",
        type=int,
        required=True,
        help="seconds until the new anchor signs: long enough to configure every terminal "
        "with it first (0: at once, after a compromise)",
    )
    rotate.add_argument(
        "--overlap-s",
        type=int,
        default=None,
        help="how long the old anchor stays trusted after the switch (default: "
        "codes.signed_list_ttl_s; 0 after a compromise)",
    )
    rotate.set_defaults(func=_cmd_rotate_anchor)
