"""API keys: named clients with scopes and a rate limit, checked by one middleware.

The credentials file lists clients; a key is stored either as is (``key``: dev files only) or
as its SHA-256 (``key_sha256``: what production files carry). Keys are compared by hash, so the
service never holds a production key in clear. Each route declares the scope it needs, or
``PUBLIC`` (health, metrics, the public trust list, the OpenAPI spec: codeengine/web/routes.py).
"""

from __future__ import annotations

__all__ = [
    "CLIENT",
    "CREDENTIALS",
    "Client",
    "Credentials",
    "authorize",
    "load_credentials",
]

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from codeengine.code import model
from codeengine.code.errors import AccessDenied, KeyringError, NotAuthenticated, RateLimited
from codeengine.code.ratelimit import TokenBucket
from codeengine.web.fastlane import HotRequest

SCOPES = frozenset(model.SCOPES)
DEFAULT_RATE_PER_S = 5000.0
MAX_KEY_CHARS = 256
_SHA256 = hashlib.sha256()
"""Copied for each key checked: a copy costs half of what making a hash object does (0.36
against 0.73 µs a key, timeit), and every request checks one."""


@dataclass(frozen=True, slots=True)
class Client:
    """A named API client: what it may do and how fast."""

    name: str
    scopes: frozenset[str]
    rate_per_s: float = DEFAULT_RATE_PER_S
    terminal_type: str | None = None
    """For terminals: the profile of ``configs/fusion.toml`` that decides what a scan shows."""


@dataclass
class Credentials:
    """Clients by the SHA-256 of their key, with one rate bucket per client in this worker."""

    by_key_hash: dict[bytes, Client]
    rate_share: float = 1.0
    """This worker's share of each client's rate (1 / workers)."""
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def authenticate(self, header: str | None) -> Client:
        """The client behind an ``Authorization: Bearer <key>`` header, or NotAuthenticated."""
        if not header or not header.startswith("Bearer ") or len(header) > MAX_KEY_CHARS + 7:
            raise NotAuthenticated("an Authorization: Bearer <key> header is required")
        try:
            hashed = _SHA256.copy()
            hashed.update(header[7:].strip().encode())
            digest = hashed.digest()
        except UnicodeEncodeError:
            raise NotAuthenticated("the API key is not valid") from None
        client = self.by_key_hash.get(digest)
        if client is None:
            raise NotAuthenticated("the API key is not valid")
        return client

    def admit_at(self, client: Client, now: float, cost: float = 1.0) -> None:
        """Take ``cost`` tokens (one a request; a handler charging a batch by its items takes
        the rest) from the client's bucket, or RateLimited with the wait."""
        bucket = self._buckets.get(client.name)
        if bucket is None:
            rate = max(client.rate_per_s * self.rate_share, 1.0)
            bucket = TokenBucket.full_at(rate, rate, now)
        bucket, wait = bucket.take_at(now, cost)
        self._buckets[client.name] = bucket
        if wait:
            raise RateLimited(TokenBucket.retry_after_header(wait))


def _client(entry: Any, index: int) -> tuple[bytes, Client]:
    where = f"clients[{index}]"
    if not isinstance(entry, dict):
        raise KeyringError(f"{where} must be an object")
    name, scopes = entry.get("client"), entry.get("scopes")
    if not isinstance(name, str) or not name:
        raise KeyringError(f"{where}.client must be a non-empty string")
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= SCOPES:
        raise KeyringError(f"{where}.scopes must be a list drawn from {sorted(SCOPES)}")
    rate = entry.get("rate_per_s", DEFAULT_RATE_PER_S)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
        raise KeyringError(f"{where}.rate_per_s must be a positive number")
    if isinstance(entry.get("key"), str):
        digest = hashlib.sha256(entry["key"].encode()).digest()
    elif isinstance(entry.get("key_sha256"), str):
        try:
            digest = bytes.fromhex(entry["key_sha256"])
        except ValueError:
            raise KeyringError(f"{where}.key_sha256 is not hex") from None
        if len(digest) != hashlib.sha256().digest_size:
            raise KeyringError(f"{where}.key_sha256 is not a SHA-256")
    else:
        raise KeyringError(f"{where} needs key or key_sha256")
    terminal_type = entry.get("terminal_type")
    if terminal_type is not None and (not isinstance(terminal_type, str) or not terminal_type):
        raise KeyringError(f"{where}.terminal_type must be a terminal profile name")
    return digest, Client(name, frozenset(scopes), float(rate), terminal_type)


def load_credentials(path: Path, rate_share: float = 1.0) -> Credentials:
    """Read the credentials file; KeyringError names the entry that is wrong."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot read credentials {path.name}: {type(exc).__name__}") from exc
    entries = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyringError("credentials need a 'clients' list")
    clients = dict(_client(entry, i) for i, entry in enumerate(entries))
    return Credentials(clients, rate_share)


CREDENTIALS = web.AppKey("credentials", Credentials)
CLIENT = web.RequestKey("client", Client)


def authorize(request: HotRequest, scope: str) -> Client:
    """Authenticate the request, check ``scope``, take one from the client's rate bucket."""
    credentials = request.app[CREDENTIALS]
    client = credentials.authenticate(request.headers.get("Authorization"))
    if scope not in client.scopes:
        raise AccessDenied(f"this operation needs the {scope!r} scope")
    credentials.admit_at(client, time.monotonic())
    request[CLIENT] = client
    return client
