"""The lists both services publish for terminals: the trust list, the signed lists, and their
conditional GETs.

Every list answers an ``ETag`` and ``304 Not Modified`` to an ``If-None-Match`` that names it,
so a terminal that polls pays a few header bytes while nothing changes. The published form of
each list (its bytes and ETag) is made once per change of the list, not per request: the
processes keep the list objects they read until the store holds different ones, and
:class:`Published` is cached against each object's identity.
"""

from __future__ import annotations

__all__ = [
    "COSE",
    "IF_NONE_MATCH",
    "JWKS_SCHEMA",
    "PUBLISHED",
    "Published",
    "PublishedLists",
    "conditional",
    "etag_of",
    "not_modified",
    "signed_list_routes",
    "trust_list",
    "trust_route",
]

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from codeengine.code.errors import KeyringError
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.signedlist import ListKind, revocations_json
from codeengine.code.suites import b64url_encode
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations
from codeengine.web.routes import PUBLIC, Route
from codeengine.web.runtime import KEYS, SETTINGS

COSE = "application/cose"
"""The media type of a signed list (RFC 9052 §9: a tagged COSE_Sign1)."""
JWK_SET = "application/jwk-set+json"
_ETAG_BYTES = 16
# The longest If-None-Match read: a terminal names one ETag, a cache a few.
_MAX_CANDIDATES = 16

IF_NONE_MATCH: dict[str, Any] = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The `ETag` of the list the caller holds: `304` with no body if it is "
    "still the current one.",
    "schema": {"type": "string"},
}

JWKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "kid", "alg", "use", "nbf", "exp"],
                "properties": {
                    "kty": {"type": "string", "enum": ["OKP", "EC"]},
                    "crv": {"type": "string"},
                    "x": {"type": "string"},
                    "y": {"type": "string"},
                    "kid": {"type": "string"},
                    "alg": {"type": "string", "enum": [s.jose_alg for s in DEFAULT_SUITES]},
                    "use": {"const": "sig"},
                    "nbf": {"type": "integer"},
                    "exp": {"type": "integer"},
                },
            },
        }
    },
}
"""The trust list's shape; the services publish it as the component ``JWKS``."""


def etag_of(body: bytes, *, weak: bool = False) -> str:
    """The ETag of a document: a quoted base64url of the first 16 bytes of its SHA-256.

    ``weak`` (``W/"..."``) for a document whose bytes vary without its meaning changing (the
    revocation list's ``as_of``).
    """
    tag = f'"{b64url_encode(hashlib.sha256(body).digest()[:_ETAG_BYTES])}"'
    return f"W/{tag}" if weak else tag


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or is ``*``), by the weak comparison that
    RFC 9110 §13.1.2 prescribes for it."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(",", _MAX_CANDIDATES)[:_MAX_CANDIDATES]:
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Published:
    """A list as served: its bytes, media type and ETag, made once per change."""

    body: bytes
    content_type: str
    etag: str


def conditional(request: web.Request, published: Published, cache_control: str) -> web.Response:
    """``published`` with its ETag, or ``304`` and no body if the caller already holds it."""
    headers = {"ETag": published.etag, "Cache-Control": cache_control}
    if not_modified(request.headers.get("If-None-Match"), published.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=published.body, content_type=published.content_type, headers=headers)


@dataclass
class PublishedLists:
    """This process's published lists, each kept with the object it was made from."""

    _trust: tuple[TrustList, Published] | None = None
    _signed: dict[ListKind, tuple[bytes, Published]] = field(default_factory=dict)
    _revocations: tuple[Revocations, bytes, str] | None = None

    def trust(self, trust: TrustList) -> Published:
        """The trust list's JWKS and ETag."""
        cached = self._trust
        if cached is None or cached[0] is not trust:
            body = trust.to_json().encode()
            cached = self._trust = (trust, Published(body, JWK_SET, etag_of(body)))
        return cached[1]

    def signed(self, kind: ListKind, document: bytes) -> Published:
        """A signed list's document and ETag."""
        cached = self._signed.get(kind)
        if cached is None or cached[0] is not document:
            cached = self._signed[kind] = (document, Published(document, COSE, etag_of(document)))
        return cached[1]

    def revocations(self, revocations: Revocations) -> tuple[bytes, str]:
        """The unsigned revocation list's JSON up to its ``as_of`` value, and its weak ETag
        (the lists' content: ``as_of`` changes with every read of the store, its meaning not)."""
        cached = self._revocations
        if cached is None or cached[0] is not revocations:
            content = revocations_json(revocations)
            head = content[:-1] + b',"as_of":'
            cached = self._revocations = (revocations, head, etag_of(content, weak=True))
        return cached[1], cached[2]


PUBLISHED = web.AppKey("published_lists", PublishedLists)
"""Each app factory gives its app one."""


def _published(app: web.Application) -> PublishedLists:
    return app[PUBLISHED]


async def trust_list(request: web.Request) -> web.Response:
    """The JWKS of every key to trust now, with validity periods; cacheable for max-age."""
    trust = request.app[KEYS].require_trust()
    max_age = request.app[SETTINGS].codes.trust_list_max_age_s
    published = _published(request.app).trust(trust)
    return conditional(request, published, f"public, max-age={max_age}")


def trust_route(summary: str, description: str = "") -> Route:
    """``GET /v1/trust``, public, as a service describes it."""
    jwks = {"schema": {"$ref": "#/components/schemas/JWKS"}}
    return Route(
        "GET",
        "/v1/trust",
        trust_list,
        "trust",
        scope=PUBLIC,
        summary=summary,
        description=f"{description} Answers an `ETag`; `If-None-Match` with it answers `304`.",
        parameters=(IF_NONE_MATCH,),
        answers={
            "200": ("The trust list", {JWK_SET: jwks}),
            "304": ("The caller's copy (its ETag) is current", {}),
        },
        problems=(503,),
    )


def _signed_handler(kind: ListKind) -> Any:
    async def signed_list(request: web.Request) -> web.Response:
        app = request.app
        document = app[KEYS].signed.get(kind)
        if document is None:
            raise KeyringError("no signed list stored yet; an issuer signs it")
        settings = app[SETTINGS]
        max_age = (
            settings.codes.trust_list_max_age_s
            if kind is ListKind.TRUST
            else max(1, int(settings.verifier.revocation_refresh_s))
        )
        published = _published(app).signed(kind, document)
        return conditional(request, published, f"public, max-age={max_age}")

    signed_list.__doc__ = f"The signed {kind.name.lower()} list, as the store holds it."
    return signed_list


_COSE_CONTENT = {COSE: {"schema": {"type": "string", "contentMediaType": COSE}}}


def signed_list_routes() -> list[Route]:
    """``GET /v1/trust/signed`` and ``GET /v1/revocations/signed``, public, on both services."""
    common = (
        "A tagged COSE_Sign1 by the trust anchor (docs/code-format.md, section 12), with a "
        "sequence number and an expiry: terminals configured with the anchor refuse an "
        "unsigned, altered, expired or older list. Issuers sign it again when the list changes "
        "and at half its validity; every service serves what the store holds. Answers an "
        "`ETag`; `If-None-Match` with it answers `304`."
    )
    return [
        Route(
            "GET",
            path,
            _signed_handler(kind),
            name,
            scope=PUBLIC,
            summary=summary,
            description=common,
            parameters=(IF_NONE_MATCH,),
            answers={
                "200": ("The signed list", _COSE_CONTENT),
                "304": ("The caller's copy (its ETag) is current", {}),
            },
            problems=(503,),
        )
        for path, kind, name, summary in (
            ("/v1/trust/signed", ListKind.TRUST, "trust_signed", "The trust list, signed"),
            (
                "/v1/revocations/signed",
                ListKind.REVOCATIONS,
                "revocations_signed",
                "The revocation list, signed",
            ),
        )
    ]
