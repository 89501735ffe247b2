"""Display tokens: the code a subject's screen shows, read with its record in one MGET.

Owns ``keyspace.token_key`` (one per subject and kind); reads ``subject_key`` beside it. Both
are sealed (codeengine.code.seal): a value whose seal fails raises RecordTampered here, which
display and verify answer grey.
"""

from __future__ import annotations

__all__ = ["DisplayAdapter"]

import time

from codeengine.code.display import DisplayedCode, body_accepts_at
from codeengine.code.errors import RecordTampered
from codeengine.code.model import Colour, SubjectId
from codeengine.code.seal import open_sealed, seal, token_context
from codeengine.code.status import SubjectRecord, colour_in_record_at
from codeengine.metrics import STORE_LATENCY, HotHistogram
from codeengine.store import keyspace
from codeengine.store.adapters._base import StoreSettings
from codeengine.store.adapters._sealed import SealedAdapter
from codeengine.store.cluster import tag_slot
from codeengine.store.scripts import SWAP_DISPLAY


class DisplayAdapter(SealedAdapter):
    """The display read (the hottest path) and the token swap."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._swap_display = self._fast.script(SWAP_DISPLAY)
        # Latency series of the hot paths, looked up once.
        self._display_read = {
            o: HotHistogram(STORE_LATENCY.labels("display read", o)) for o in ("ok", "error")
        }

    async def display_state(
        self, subject: SubjectId, kind: int | None = None
    ) -> tuple[SubjectRecord | None, DisplayedCode | None]:
        """The subject's record and current display token of ``kind`` (one MGET, one slot)."""
        record_raw, token_raw = await self._read_display(subject, kind)
        record = None if record_raw is None else self.open_record(subject, record_raw)
        shown = None if token_raw is None else self._open_token(subject, kind, token_raw)
        return record, shown

    async def scan_state(
        self, subject: SubjectId, kind: int | None, token: str, now: int
    ) -> tuple[Colour | None, bool]:
        """The subject's colour at ``now`` (None: no record), and whether ``token`` is a display
        token of ``kind`` the issuer handed out (current, or the previous one until it
        expires): one MGET. Only the record's colour is read (``colour_in_record_at``)."""
        record_raw, token_raw = await self._read_display(subject, kind)
        colour = (
            None
            if record_raw is None
            else colour_in_record_at(self.open_record_body(subject, record_raw), now)
        )
        if token_raw is None:
            return colour, False
        return colour, body_accepts_at(self._open_token_body(subject, kind, token_raw), token, now)

    async def _read_display(
        self, subject: SubjectId, kind: int | None
    ) -> tuple[bytes | None, bytes | None]:
        started = time.perf_counter()
        outcome = "error"
        try:
            # Started once: skip the coroutine that would only say so.
            fast = self._fast if self._fast_started else await self._hot()
            keys_ = [keyspace.subject_key(subject), keyspace.token_key(subject, kind)]
            # Both keys carry the subject's hash tag: its slot is theirs.
            record_raw, token_raw = await fast.mget(keys_, slot=tag_slot(subject))
            outcome = "ok"
        finally:
            self._display_read[outcome].observe(time.perf_counter() - started)
        return record_raw, token_raw

    def _open_token(self, subject: SubjectId, kind: int | None, raw: bytes) -> DisplayedCode:
        return DisplayedCode.unpack(self._open_token_body(subject, kind, raw))

    def _open_token_body(self, subject: SubjectId, kind: int | None, raw: bytes) -> bytes:
        try:
            return open_sealed(self._record_keys(), token_context(subject, kind), raw)
        except RecordTampered:
            self.report_tampered(subject, "token")
            raise

    async def replace_display(
        self,
        subject: SubjectId,
        seen: DisplayedCode | None,
        new: DisplayedCode,
        ttl_ms: int,
        kind: int | None = None,
    ) -> DisplayedCode:
        """Store ``new`` unless another process refreshed first; the token now stored."""
        new_raw = seal(self._record_keys(), token_context(subject, kind), new.pack())
        args: list[bytes | int] = [b"" if seen is None else seen.pack(), new_raw, ttl_ms]
        started = time.perf_counter()
        outcome = "error"
        try:
            await self._hot()
            stored = await self._swap_display(
                [keyspace.token_key(subject, kind)],
                args,
                deadline_s=self._settings.write_deadline_ms / 1000,
            )
            outcome = "ok"
        finally:
            STORE_LATENCY.labels("display write", outcome).observe(time.perf_counter() - started)
        return new if stored == new_raw else self._open_token(subject, kind, stored)
