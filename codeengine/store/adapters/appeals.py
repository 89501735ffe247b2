"""Appeals: a subject's request for review, and the override an upheld one applies.

Owns ``keyspace.appeal_key`` and ``appeal_marker_key``; an upheld decision writes the
subject's ``subject_key`` and ``audit_key`` (a sealed write, ``adapters._sealed``).
"""

from __future__ import annotations

__all__ = ["AppealAdapter"]

from codeengine.code.errors import AppealDecided, UnknownAppeal, UnknownSubject
from codeengine.code.model import Colour, SubjectId
from codeengine.code.status import SubjectRecord
from codeengine.store import keyspace
from codeengine.store.adapters._base import StoreSettings, _fenced_off, _text_fields
from codeengine.store.adapters._sealed import Plan, fence_record
from codeengine.store.adapters.subjects import SubjectAdapter
from codeengine.store.results import PutCode


class AppealAdapter(SubjectAdapter):
    """Appeals and their decisions; a subject adapter, since a decision reads the record."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)

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

        def plan(current: SubjectRecord | None) -> Plan:
            if current is None:
                raise UnknownSubject("no such subject")
            fenced = fence_record(current, token)
            if fenced is None:
                raise _fenced_off(token)
            version = current.version + 1
            new = fenced._replace(version=version, last_batch="", override=applied,
                                  updated_at=now)  # fmt: skip
            entry = {"op": "appeal", "actor": actor,
                     "reason": decision.get("decision_reason", ""), "old": int(current.colour),
                     "new": int(applied[0]), "v": version, "at": now, "op_id": appeal_id,
                     "ends": applied[1]}  # fmt: skip
            return Plan(new, entry, marker=str(version))

        async def work() -> tuple[PutCode | None, bytes, SubjectRecord | None]:
            return await self._sealed_write(
                subject, plan, token, marker_key=keyspace.appeal_marker_key(subject, appeal_id)
            )

        code, value, written = await self._bounded(work, self._settings.write_deadline_ms, "write")
        version = int(value) if code is PutCode.REPEAT else written.version if written else 0
        await fast.execute(key, "HSET", key, "applied", "1", deadline_s=self._bulk_deadline_s)
        return int(version)
