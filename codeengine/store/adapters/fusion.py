"""Card-code fusion: aliases (card numbers and the like) bound to subjects, and licences.

Owns ``keyspace.alias_key``, ``subject_aliases_key`` and ``licences_key``; a binding is
audited on the subject's ``audit_key``.
"""

from __future__ import annotations

__all__ = ["FusionAdapter"]

import asyncio
from collections.abc import Sequence

from codeengine.code.errors import RecordTampered
from codeengine.code.model import SubjectId
from codeengine.code.seal import alias_context, open_sealed, seal
from codeengine.code.status import SubjectRecord
from codeengine.store import keyspace
from codeengine.store.adapters._base import StoreSettings, _text_fields
from codeengine.store.adapters._sealed import Plan, SealedAdapter
from codeengine.store.port import AliasBinding
from codeengine.store.results import ClaimCode, PutCode, ReleaseCode
from codeengine.store.scripts import ALIAS_CLAIM, ALIAS_RELEASE


class FusionAdapter(SealedAdapter):
    """Alias bindings and licence links."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._alias_claim = self._fast.script(ALIAS_CLAIM)
        self._alias_release = self._fast.script(ALIAS_RELEASE)

    async def bind_aliases(
        self, bindings: Sequence[AliasBinding], actor: str, now: int
    ) -> list[str]:
        """Claim every alias key, list the claimed ones on their subjects, WAIT once per node."""
        if not bindings:
            return []
        await self.fence.writer()
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        claims = await fast.bulk(
            [(k := keyspace.alias_key(b.alias),
              ("EVALSHA", self._alias_claim.sha, 1, k, b.subject, self._seal_alias(b)))
             for b in bindings],
            deadline_s=deadline_s,
        )  # fmt: skip
        claimed = [int(fast.reply_or_raise(r, "EVALSHA")[0]) for r in claims]
        results = ["taken" if c == ClaimCode.TAKEN else "" for c in claimed]
        mine = [i for i, c in enumerate(claimed) if c != ClaimCode.TAKEN]
        links = await asyncio.gather(
            *(self._link_alias(b.subject, "bind", b.alias, b.listed, actor, now)
              for b in (bindings[i] for i in mine))
        )  # fmt: skip
        release = []
        for i, link in zip(mine, links, strict=True):
            if link is None:
                results[i] = "unknown_subject"
                if claimed[i] == ClaimCode.CLAIMED:
                    release.append(bindings[i])
            else:
                claimed_now = claimed[i] == ClaimCode.CLAIMED
                results[i] = "bound" if claimed_now or link else "unchanged"
        if release:
            await fast.bulk(
                [(k := keyspace.alias_key(b.alias), ("EVALSHA", self._alias_release.sha, 1, k,
                                                b.subject)) for b in release],
                deadline_s=deadline_s,
            )  # fmt: skip
        written = [keyspace.alias_key(b.alias) for b in bindings] + [
            keyspace.subject_key(b.subject) for b in bindings
        ]
        await self._replicated(fast, written, bulk=True)
        return results

    async def unbind_alias(self, subject: SubjectId, alias: str, actor: str, now: int) -> bool:
        """Take the alias off the subject's list (audited), then free the alias key."""
        await self.fence.writer()
        fast = await self._hot()
        linked = await self._link_alias(subject, "unbind", alias, "", actor, now)
        (released,) = await self._alias_release(
            [keyspace.alias_key(alias)], [subject], deadline_s=self._bulk_deadline_s
        )
        await self._replicated(fast, [keyspace.alias_key(alias), keyspace.subject_key(subject)])
        return bool(linked) or int(released) == ReleaseCode.RELEASED

    async def _link_alias(
        self, subject: SubjectId, action: str, alias: str, listed: str, actor: str, now: int
    ) -> bool | None:
        """List or unlist an alias on its subject, audited; None for an unknown subject,
        else whether it changed anything."""
        token = await self.fence.writer()
        fast = await self._hot()
        aliases_key = keyspace.subject_aliases_key(subject)
        present = await fast.execute(
            aliases_key, "HGET", aliases_key, alias, deadline_s=self._bulk_deadline_s
        )
        if (present is not None) == (action == "bind"):
            exists = await fast.execute(
                keyspace.subject_key(subject), "EXISTS", keyspace.subject_key(subject)
            )
            return False if int(exists) else None
        kind = (listed if action == "bind" else present.decode()).partition(":")[0]

        def plan(current: SubjectRecord | None) -> Plan | None:
            if current is None:
                return None
            entry = {"op": f"alias_{action}", "actor": actor, "reason": kind,
                     "old": int(current.colour), "new": int(current.colour),
                     "v": current.version, "at": now, "op_id": alias}  # fmt: skip
            side = "hset" if action == "bind" else "hdel"
            return Plan(current, entry, side=side, side_field=alias, side_value=listed)

        code, _, _ = await self._sealed_write(subject, plan, token, side_key=aliases_key)
        if code is None:
            return None
        return code is PutCode.APPLIED

    def _seal_alias(self, binding: AliasBinding) -> bytes:
        context = alias_context(binding.alias)
        return seal(self._record_keys(), context, binding.subject.encode())

    async def subject_for_alias(self, alias: str) -> SubjectId | None:
        """One GET of the alias key, within the read deadline (a scan waits on it); an alias
        whose seal fails is RecordTampered (counted, logged under the alias's hash)."""
        fast = await self._hot()
        raw = await fast.get(keyspace.alias_key(alias))
        if raw is None:
            return None
        try:
            return SubjectId(open_sealed(self._record_keys(), alias_context(alias), raw).decode())
        except RecordTampered:
            self.report_tampered(SubjectId(f"alias:{alias}"), "alias")
            raise

    async def list_aliases(self, subject: SubjectId) -> list[tuple[str, str]]:
        """The subject's alias hash, as (alias, ``type:masked``) pairs."""
        fast = await self._hot()
        key = keyspace.subject_aliases_key(subject)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        return sorted(_text_fields(flat).items())

    async def link_licence(self, subject: SubjectId, licence: str, listed: str) -> bool:
        """HSET the licence on the subject, acknowledged after WAIT."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.licences_key(subject)
        added = await fast.execute(
            key, "HSET", key, licence, listed, deadline_s=self._bulk_deadline_s
        )
        await self._replicated(fast, [key])
        return bool(int(added))

    async def licences(self, subject: SubjectId) -> list[str]:
        """The values of the subject's licence hash."""
        fast = await self._hot()
        key = keyspace.licences_key(subject)
        # Within the read deadline: a service-hall scan waits on it.
        return sorted(v.decode() for v in await fast.execute(key, "HVALS", key))
