"""Appeals: a subject's request for review, and the override an upheld one applies.

Owns ``keyspace.appeal_key`` and ``appeal_marker_key``; an upheld decision writes the
subject's ``subject_key`` and ``audit_key`` (the ``SET_OVERRIDE`` script).
"""

from __future__ import annotations

__all__ = ["AppealAdapter"]

from typing import Any

from codeengine.code.errors import AppealDecided, UnknownAppeal, UnknownSubject
from codeengine.code.model import Colour, SubjectId
from codeengine.store import keyspace
from codeengine.store.adapters._base import StoreSettings, _fenced_off, _text_fields
from codeengine.store.adapters.subjects import SubjectAdapter
from codeengine.store.results import WriteCode, did_write
from codeengine.store.scripts import SET_OVERRIDE


class AppealAdapter(SubjectAdapter):
    """Appeals and their decisions; a subject adapter, since a decision reads the record."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._acknowledged(SET_OVERRIDE)

    async def create_appeal(self, appeal_id: str, fields: dict[str, str]) -> None:
        """Store the appeal (a hash in its own slot), acknowledged after WAIT."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.appeal_key(appeal_id)
        await fast.execute(key, "HSET", key, *(x for item in fields.items() for x in item))
        await self._replicated(fast, [key])

    async def get_appeal(self, appeal_id: str) -> dict[str, str]:
        """The appeal's fields, or UnknownAppeal."""
        fast = await self._hot()
        key = keyspace.appeal_key(appeal_id)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        if not flat:
            raise UnknownAppeal("no appeal with this id")
        return _text_fields(flat)

    async def decide_appeal(
        self,
        appeal_id: str,
        subject: SubjectId,
        decision: dict[str, str],
        override: tuple[Colour, int] | None,
        actor: str,
        now: int,
    ) -> int:
        """Record the decision once, then apply an upheld one's override, exactly once.

        A repeat of the same decision is a no-op, except that it finishes a decision whose
        override had not been applied yet (a store failure in between): then it applies the
        colour and expiry recorded the first time.
        """
        fast = await self._hot()
        token = await self.fence.writer()
        key = keyspace.appeal_key(appeal_id)
        first = int(
            await fast.execute(
                key,
                "HSETNX",
                key,
                "decision",
                decision["decision"],
                deadline_s=self._bulk_deadline_s,
            )
        )
        if first:
            await fast.execute(key, "HSET", key, *(x for item in decision.items() for x in item))
            await self._replicated(fast, [key])
        else:
            stored = await self.get_appeal(appeal_id)
            if stored.get("decision") != decision["decision"]:
                raise AppealDecided("this appeal has been decided already")
            if stored.get("applied") == "1" or override is None:
                record = await self.get_subject(subject)
                return 0 if record is None else record.version
            override = (Colour[stored["colour"].upper()], int(stored["until"]))
            decision = stored
        if override is None:
            await fast.execute(key, "HSET", key, "applied", "1", deadline_s=self._bulk_deadline_s)
            record = await self.get_subject(subject)
            return 0 if record is None else record.version
        applied = override

        async def work() -> Any:
            return await self._write_then_wait(
                SET_OVERRIDE,
                [keyspace.subject_key(subject), keyspace.appeal_marker_key(subject, appeal_id),
                 keyspace.audit_key(subject)],
                [int(applied[0]), applied[1], now, actor, decision.get("decision_reason", ""),
                 appeal_id, *token],
                wrote=did_write,
            )  # fmt: skip

        code, version = await self._bounded(work, self._settings.write_deadline_ms, "write")
        if int(code) == WriteCode.UNKNOWN_SUBJECT:
            raise UnknownSubject("no such subject")
        if int(code) == WriteCode.FENCED:
            raise _fenced_off(token)
        await fast.execute(key, "HSET", key, "applied", "1", deadline_s=self._bulk_deadline_s)
        return int(version)
