"""The calls app backends and terminals make, typed: values in, values out, one error a reason.

:class:`IssuerClient` (生码 generate, 亮码 display, 赋码/转码 convert) and
:class:`VerifierClient` (扫码/验码 verify, verify batch) are failover clients of one service of
one city (:class:`~failover.client.FailoverClient`: probes, breakers, failover, Retry-After and
jitter), with methods that build the documented request, send it with failover and return the
answer as a value of :mod:`failover.results`. A refusal raises the class of its reason code
(:mod:`failover.errors`); no endpoint answering within the budget raises
:class:`~failover.errors.Unreachable`. The generic :meth:`~failover.client.FailoverClient.request`
is still there for every other operation.

Every call takes ``request_id``: the ``X-Request-Id`` all its attempts carry (one is made when
none is given), which the services log and answer with, and every exception carries.

Which calls are resent after an attempt whose outcome is unknown: generate (the same identifier
always gives the same subject), display, convert (each carries an ``op_id``: one is made when the
caller gives none, so a resend is never applied twice) and verify (a resent scan is at worst
logged twice; ``idempotent=False`` says otherwise).
"""

from __future__ import annotations

__all__ = ["IssuerClient", "VerifierClient"]

import uuid
from collections.abc import Sequence
from typing import Any, Literal, Unpack
from urllib.parse import quote

import aiohttp

from codeengine.code.cities import City
from codeengine.code.model import Colour
from failover.client import Answer, ClientOptions, FailoverClient, new_request_id
from failover.errors import REQUEST_ID_HEADER, UnexpectedAnswer, Unreachable
from failover.results import Converted, DisplayedCode, Scan, Subject, Verdict

SubjectKind = Literal["person", "enterprise"]
DisplayKind = Literal["own", "health", "service", "fused"]
ImageFormat = Literal["png", "svg"]


class _TypedClient(FailoverClient):
    """What the typed clients share: a call that answers a JSON document or raises."""

    async def _answer(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        idempotent: bool,
        request_id: str | None,
    ) -> Answer:
        request_id = request_id or new_request_id()
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            answer = await self.request(
                method, path, json_body=json_body, headers=headers, idempotent=idempotent
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(
                f"no {self.service} endpoint of city {self.city} answered ({type(exc).__name__})",
                request_id,
            ) from exc
        return answer.raise_for_problem()

    async def _document(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        idempotent: bool,
        request_id: str | None,
    ) -> object:
        answer = await self._answer(
            method, path, json_body=json_body, idempotent=idempotent, request_id=request_id
        )
        try:
            return answer.json()
        except ValueError:
            raise UnexpectedAnswer(answer.status, "the body is not JSON") from None


def _subject_path(subject: str, tail: str) -> str:
    # A pseudonym is base64url; quoting keeps anything else from reaching another path.
    return f"/v1/subjects/{quote(subject, safe='')}/{tail}"


class IssuerClient(_TypedClient):
    """A city's issuer, primary and backup: generate, display and convert, typed."""

    def __init__(
        self, city: City, session: aiohttp.ClientSession, **options: Unpack[ClientOptions]
    ) -> None:
        """``options`` as :class:`~failover.client.FailoverClient` takes them (``api_key``,
        ``budget_s``, ...)."""
        super().__init__(city, "issuer", session, **options)

    async def generate(
        self, kind: SubjectKind, identifier: str, city: int, *, request_id: str | None = None
    ) -> Subject:
        """生码: the subject of a resident ID (``person``) or unified social credit code
        (``enterprise``), created if new. The identifier goes in the body only."""
        body = {"kind": kind, "id": identifier, "city": city}
        document = await self._document(
            "POST", "/v1/subjects", json_body=body, idempotent=True, request_id=request_id
        )
        return Subject.from_json(document)

    async def display(
        self, subject: str, *, kind: DisplayKind = "own", request_id: str | None = None
    ) -> DisplayedCode:
        """亮码: the code to show now; ask again from its ``refresh_at`` on."""
        path = _subject_path(subject, "code") + ("" if kind == "own" else f"?kind={kind}")
        document = await self._document("GET", path, idempotent=True, request_id=request_id)
        return DisplayedCode.from_json(document)

    async def display_image(
        self,
        subject: str,
        image_format: ImageFormat,
        *,
        kind: DisplayKind = "own",
        request_id: str | None = None,
    ) -> bytes:
        """亮码 as a QR image (PNG or SVG) of the same code :meth:`display` returns."""
        query = f"?format={image_format}" + ("" if kind == "own" else f"&kind={kind}")
        path = _subject_path(subject, "code") + query
        answer = await self._answer("GET", path, idempotent=True, request_id=request_id)
        return answer.body

    async def convert(
        self,
        subject: str,
        colour: Colour | str,
        *,
        reason: str,
        if_version: int,
        op_id: str | None = None,
        request_id: str | None = None,
    ) -> Converted:
        """赋码/转码: set the subject's colour if its status version is still ``if_version``.

        ``op_id`` makes the change apply once however often it is sent; one is made when none
        is given, so the client's own resends are safe too. A stale ``if_version`` raises
        :class:`~failover.errors.VersionConflict` with ``current_version``.
        """
        label = colour.label if isinstance(colour, Colour) else colour
        body = {
            "colour": label,
            "reason": reason,
            "if_version": if_version,
            "op_id": op_id or uuid.uuid4().hex,
        }
        path = _subject_path(subject, "status")
        document = await self._document(
            "POST", path, json_body=body, idempotent=True, request_id=request_id
        )
        return Converted.from_json(document)


class VerifierClient(_TypedClient):
    """A city's verifier, primary and backup: verify one code or a batch, typed."""

    def __init__(
        self, city: City, session: aiohttp.ClientSession, **options: Unpack[ClientOptions]
    ) -> None:
        """``options`` as :class:`~failover.client.FailoverClient` takes them."""
        super().__init__(city, "verifier", session, **options)

    async def verify(
        self,
        code: str,
        *,
        terminal: str,
        city: int,
        venue: str | None = None,
        idempotent: bool = True,
        request_id: str | None = None,
    ) -> Verdict:
        """扫码/验码: the verdict on one scanned code (or alias credential such as
        ``SSC:...``). A refused code is a verdict with ``valid`` False, not an exception:
        call :meth:`~failover.results.Verdict.check` to raise its reason's."""
        body = Scan(code, terminal, city, venue).to_json()
        document = await self._document(
            "POST", "/v1/verify", json_body=body, idempotent=idempotent, request_id=request_id
        )
        return Verdict.from_json(document)

    async def verify_batch(
        self, scans: Sequence[Scan], *, idempotent: bool = True, request_id: str | None = None
    ) -> list[Verdict]:
        """The verdicts on up to ``verifier.batch_max`` (500) scans, in their order."""
        body = {"items": [scan.to_json() for scan in scans]}
        document = await self._document(
            "POST", "/v1/verify/batch", json_body=body, idempotent=idempotent, request_id=request_id
        )
        results = document.get("results") if isinstance(document, dict) else None
        if not isinstance(results, list) or len(results) != len(scans):
            raise UnexpectedAnswer(200, "'results' is not one verdict a scan")
        return [Verdict.from_json(result) for result in results]
