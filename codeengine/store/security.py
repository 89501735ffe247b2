"""How the cluster client proves who it is and checks who it talks to: TLS and an ACL login.

Built once from the ``[cluster]`` settings into a :class:`StoreSecurity`: one
``ssl.SSLContext`` that every connection of the process shares (its certificates are read
once, not at every reconnect), and the ``AUTH`` command each new connection sends before any
other. A file that cannot be read fails here, at start-up, naming its setting.

Also the one place that knows which setting a refused connection points at: a TLS handshake
that fails, a server that speaks the other protocol, a wrong password
(:func:`refusal_for_handshake`, :func:`refusal_for_auth`).
"""

from __future__ import annotations

__all__ = [
    "PLAIN",
    "StoreRefused",
    "StoreSecurity",
    "load_security",
    "refusal_for_auth",
    "refusal_for_handshake",
    "refusal_for_silence",
]

import ssl
from dataclasses import dataclass
from pathlib import Path

from codeengine.code.errors import StoreUnavailable
from codeengine.code.secret import Secret


class StoreRefused(StoreUnavailable):
    """The cluster refused this client: a ``cluster.*`` setting is wrong; the message names it.

    Still a StoreUnavailable (callers degrade as for any outage), but retrying will not help:
    the start-up log and readiness say which setting to fix.
    """

    def __init__(self, detail: str, *, setting: str = "cluster.nodes") -> None:
        super().__init__(detail)
        self.setting = setting
        """The setting to look at first (``codeengine serve --check`` names it)."""


@dataclass(frozen=True, slots=True)
class StoreSecurity:
    """The TLS context (None: plain text) and the login of every connection (None: no AUTH)."""

    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None
    """The name each node's certificate must carry (the nodes are reached by address)."""
    username: str = ""
    password: Secret | None = None

    @property
    def auth_args(self) -> tuple[str | bytes, ...] | None:
        """The ``AUTH`` command's arguments, or None when the cluster needs no login."""
        if self.password is None:
            return None
        if self.username:
            return ("AUTH", self.username, self.password.reveal())
        return ("AUTH", self.password.reveal())

    def __repr__(self) -> str:
        tls = "tls" if self.ssl_context is not None else "plain"
        return f"StoreSecurity({tls}, user={self.username or '-'})"


PLAIN = StoreSecurity()
"""No TLS and no login: a cluster without ACL users (benchmarks' plain setup)."""


def _read_password(password_file: str) -> Secret:
    try:
        text = Path(password_file).read_text().strip()
    except OSError as exc:
        raise StoreRefused(
            f"cluster.password_file: cannot read {password_file}: {exc.strerror}",
            setting="cluster.password_file",
        ) from exc
    if not text:
        raise StoreRefused(
            f"cluster.password_file: {password_file} is empty", setting="cluster.password_file"
        )
    return Secret(text.encode())


def _context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    # Not create_default_context: it trusts the system's public CAs too, and any certificate
    # they issued for the server name would pass. The cluster's own CA is the only one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checked, certificate required
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise StoreRefused(
            f"cluster.ca_file: cannot load {ca_file}: {exc}", setting="cluster.ca_file"
        ) from exc
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise StoreRefused(
                f"cluster.cert_file/cluster.key_file: cannot load {cert_file}, {key_file}: {exc}",
                setting="cluster.cert_file",
            ) from exc
    return context


def load_security(
    *,
    username: str,
    password_file: str,
    tls: bool,
    ca_file: str,
    cert_file: str = "",
    key_file: str = "",
    server_name: str = "",
) -> StoreSecurity:
    """Read the CA, the client certificate and the password once; StoreRefused names a bad one."""
    password = _read_password(password_file) if password_file else None
    if not tls:
        return StoreSecurity(username=username, password=password)
    return StoreSecurity(
        ssl_context=_context(ca_file, cert_file, key_file),
        server_name=server_name or None,
        username=username,
        password=password,
    )


def refusal_for_handshake(exc: BaseException, security: StoreSecurity, addr: str) -> StoreRefused:
    """What a failed TLS handshake means, naming the setting to look at."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 62 or "hostname" in str(exc.verify_message).lower():
            return StoreRefused(
                f"store {addr}: its certificate does not name {security.server_name!r}; "
                "check cluster.server_name",
                setting="cluster.server_name",
            )
        return StoreRefused(
            f"store {addr}: its certificate is not trusted ({exc.verify_message}); "
            "check cluster.ca_file",
            setting="cluster.ca_file",
        )
    text = str(exc).lower()
    if "wrong version number" in text or "record layer failure" in text or "packet length" in text:
        return StoreRefused(
            f"store {addr} does not speak TLS; check cluster.tls (on here) and the node's port",
            setting="cluster.tls",
        )
    return StoreRefused(
        f"store {addr}: TLS handshake failed ({type(exc).__name__}); check cluster.tls, "
        "cluster.ca_file, cluster.cert_file and cluster.key_file",
        setting="cluster.tls",
    )


def refusal_for_auth(reply: str, security: StoreSecurity, addr: str) -> StoreRefused:
    """What an error reply to the first command of a connection (AUTH, or PING) means."""
    prefix = reply.split(" ", 1)[0]
    if prefix == "WRONGPASS" or "invalid username-password" in reply:
        return StoreRefused(
            f"store {addr} refused the login of {security.username or 'default'!r}; "
            "check cluster.username and cluster.password_file",
            setting="cluster.password_file",
        )
    if prefix == "NOAUTH":
        return StoreRefused(
            f"store {addr} needs a login; set cluster.username and cluster.password_file",
            setting="cluster.username",
        )
    if prefix == "NOPERM":
        return StoreRefused(
            f"store {addr}: user {security.username!r} may not run the connection's first "
            "command; the cluster's ACL rule for it is wrong",
            setting="cluster.username",
        )
    return StoreRefused(f"store {addr} refused the connection: {prefix}")


def refusal_for_silence(security: StoreSecurity, addr: str) -> StoreRefused:
    """A node that closed the connection before answering its first command."""
    if security.ssl_context is None:
        return StoreRefused(
            f"store {addr} closed the connection before answering; if it speaks TLS, set "
            "cluster.tls on (off here)",
            setting="cluster.tls",
        )
    return StoreRefused(
        f"store {addr} closed the TLS connection before answering; if it requires a client "
        "certificate, set cluster.cert_file and cluster.key_file",
        setting="cluster.cert_file",
    )
