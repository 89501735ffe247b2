"""The signed lists: issuers sign the trust list and the revocation list with the trust anchor.

Only issuers hold the anchor (``keys.trust_anchor_file``): a stolen verifier host cannot sign a
list. Every issuer process runs one publisher. Every ``verifier.revocation_refresh_s`` (at most
``codes.keyring_refresh_s``) it reads the stored trust list, the revocations and the stored
signed lists, and signs a list again when its content changed, another anchor signs now, or it
is past half its validity (``codes.signed_list_ttl_s``). It stores the new list with a
compare-and-set on the sequence, so two issuers that sign at once store one list and the
sequence never goes back. Revocations made on any verifier therefore reach the signed list
within about a second, with no signing key on the verifiers. Every service serves what the store
holds (``codeengine.web.trust``).
"""

from __future__ import annotations

__all__ = ["attach_publisher", "publish_at"]

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from codeengine.code.errors import CodeEngineError, KeyringError, ListRefused, VersionConflict
from codeengine.code.keyring import Keyring
from codeengine.code.signedlist import (
    ListKind,
    SignedList,
    next_sequence,
    read_list,
    resign_due_at,
    revocations_json,
    sign_list,
)
from codeengine.keyfiles import load_trust_anchor
from codeengine.metrics import SIGNED_LISTS
from codeengine.settings import Settings
from codeengine.store.port import Store
from codeengine.web.health import READINESS_CHECKS
from codeengine.web.runtime import CLOCK, KEYS, STORE

log = logging.getLogger("codeengine.issuer.signedlists")


async def publish_at(store: Store, anchors: Keyring, now: float, ttl_s: int) -> list[SignedList]:
    """Sign and store each list that is due at ``now`` (seconds); the lists stored.

    Nothing is signed before an issuer has stored a trust list. A list another issuer stored
    in between is left to it (the next round reads it).
    """
    seconds = int(now)
    trust, revocations = await asyncio.gather(store.get_trust(), store.revocations(seconds))
    if trust is None:
        return []
    key = anchors.signing_key_at(seconds)
    contents = {ListKind.TRUST: trust, ListKind.REVOCATIONS: revocations_json(revocations)}
    stored_now = []
    for kind, content in contents.items():
        seq, document = await store.get_signed_list(kind)
        stored = None
        if document is not None:
            # Whatever is stored and is no list (an insider's write) is replaced.
            with contextlib.suppress(ListRefused):
                stored = read_list(document)
        if not resign_due_at(stored, content, key.kid, seconds):
            continue
        floor = max(seq, stored.seq if stored is not None else 0)
        signed = sign_list(
            kind, content, next_sequence(floor, int(now * 1000)), seconds, seconds + ttl_s, key
        )
        try:
            await store.put_signed_list(kind, seq, signed.seq, signed.document)
        except VersionConflict:
            continue
        stored_now.append(signed)
    return stored_now


async def _keep_publishing(app: web.Application, settings: Settings) -> None:
    interval = min(settings.codes.keyring_refresh_s, settings.verifier.revocation_refresh_s)
    state = app[KEYS]
    path = Path(settings.keys.trust_anchor_file)
    read_at = time.monotonic()
    while True:
        try:
            if time.monotonic() - read_at >= settings.keys.mac_refresh_s:
                # A rotation (codeengine keys rotate-anchor) is picked up without a restart.
                state.anchors, read_at = load_trust_anchor(path), time.monotonic()
            anchors = state.anchors
            if anchors is not None:
                for signed in await publish_at(
                    app[STORE], anchors, app[CLOCK](), settings.codes.signed_list_ttl_s
                ):
                    kind = signed.kind.name.lower()
                    SIGNED_LISTS.labels(kind).inc()
                    log.info("signed %s list %d stored", kind, signed.seq)
        except CodeEngineError as exc:
            # The store is down or the anchor file unreadable: the lists already stored stay
            # served, and terminals notice their expiry.
            log.warning("signing the lists failed: %s", exc.reason.value)
        except Exception:
            log.exception("signing the lists failed")
        await asyncio.sleep(interval)


def attach_publisher(app: web.Application, settings: Settings) -> None:
    """Run the publisher while the app serves (the runtime reads the anchor at start: a
    missing or bad file stops the issuer, naming the file); ready only with an anchor valid
    now."""

    async def publisher(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_keep_publishing(app, settings))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def anchor_ready() -> None:
        anchors = app[KEYS].anchors
        if anchors is None:
            raise KeyringError("trust anchor not loaded yet")
        anchors.signing_key_at(int(app[CLOCK]()))

    app.cleanup_ctx.append(publisher)
    app[READINESS_CHECKS]["anchor"] = anchor_ready
