"""Public health credentials of other issuers (EU DCC, SMART Health Cards): verdict and policy.

A terminal that scans a traveller's ``HC1:`` or ``shc:/`` credential answers in the engine's
verdict shape, with the format named and what the credential is (its type, dates and issuer),
never who it names. The colour it shows is the venue's policy (:class:`ColourPolicy`, from
configuration), because a vaccination certificate means green in one place and nothing in
another; the format decides only whether the credential is genuine and current.
"""

from __future__ import annotations

__all__ = [
    "FORMATS",
    "ColourPolicy",
    "Credential",
    "CredentialFormat",
    "CredentialVerdict",
    "credential_refusal",
]

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from codeengine.code.errors import VerificationError
from codeengine.code.model import Colour


class CredentialFormat(StrEnum):
    """The credential formats a verifier reads besides its own codes, by their wire prefix."""

    DCC = "dcc"
    SHC = "shc"

    @property
    def prefix(self) -> str:
        """The text a scanned credential of this format starts with."""
        return _PREFIXES[self]


_PREFIXES: Final = {CredentialFormat.DCC: "HC1:", CredentialFormat.SHC: "shc:/"}
FORMATS: Final = tuple(CredentialFormat)
"""Every credential format, in the order a scanned text is matched against their prefixes."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What a verified (or signature-checked) credential is: never who it names.

    ``type`` is the format's own word (``vaccination``, ``test``, ``recovery`` for a DCC;
    ``immunization``, ``laboratory``, ``covid19`` or ``health-card`` for a SMART Health Card).
    ``issuer`` is the DCC's issuing country or the SMART issuer's URL.
    """

    format: CredentialFormat
    type: str
    issued_at: int
    expires_at: int | None
    issuer: str

    def to_json(self) -> dict[str, object]:
        """The ``credential`` member of a verify answer."""
        return {
            "type": self.type,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "issuer": self.issuer,
        }


@dataclass(frozen=True, slots=True)
class CredentialVerdict:
    """The answer to one scanned credential, in the shape of the engine's own ``Verdict``.

    ``kind`` and ``city`` are the engine's own and stay None; ``as_of`` is the issue time, the
    moment the signed content speaks for. ``credential`` is set once the signature held (or the
    refusal came after it: expired, revoked), so a refusal never echoes unsigned content.
    """

    valid: bool
    reason: str
    checked_at: int
    format: CredentialFormat
    colour: Colour | None = None
    credential: Credential | None = None

    @property
    def subject(self) -> None:
        """No pseudonym: a foreign credential names nobody the engine knows (for the scan log)."""
        return None

    @property
    def as_of(self) -> int | None:
        """When the credential was issued, once known."""
        return None if self.credential is None else self.credential.issued_at

    def to_json(self) -> dict[str, object]:
        """The API answer: the engine's verdict members, the format and the credential."""
        return {
            "valid": self.valid,
            "reason": self.reason,
            "colour": None if self.colour is None else self.colour.label,
            "kind": None,
            "city": None,
            "checked_at": self.checked_at,
            "as_of": self.as_of,
            "degraded": False,
            "format": self.format.value,
            "credential": None if self.credential is None else self.credential.to_json(),
        }


def credential_refusal(
    fmt: CredentialFormat, exc: VerificationError, now: int, credential: Credential | None = None
) -> CredentialVerdict:
    """The verdict for a refused credential."""
    return CredentialVerdict(False, exc.reason.value, now, fmt, None, credential)


_DEFAULT: Final = "default"


@dataclass(frozen=True, slots=True)
class ColourPolicy:
    """What colour a valid credential shows, by format and type (``[credentials.FORMAT]``).

    Each format's table maps a credential type to a colour label and must name a ``default``
    for the types it does not list. A format without a table is not read at all (see
    :meth:`accepts`): its credentials are refused ``MALFORMED``, as by a verifier that knows no
    such format.
    """

    colours: Mapping[CredentialFormat, Mapping[str, Colour]]

    @classmethod
    def from_document(cls, document: Mapping[str, object]) -> ColourPolicy:
        """Parse a whole policy file (``credentials.toml``, parsed): ``version = 1`` and the
        ``credentials`` table; ValueError naming the key otherwise."""
        unknown = set(document) - {"version", "credentials"}
        if unknown:
            raise ValueError(f"credential policy: unknown key {sorted(unknown)[0]!r}")
        if document.get("version") != 1:
            raise ValueError("credential policy: version must be 1")
        table = document.get("credentials", {})
        if not isinstance(table, Mapping):
            raise ValueError("credential policy: credentials must be a table")
        return cls.from_table(table)

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> ColourPolicy:
        """Parse the ``credentials`` table of the configuration; ValueError naming the key."""
        colours: dict[CredentialFormat, Mapping[str, Colour]] = {}
        by_label = {colour.label: colour for colour in Colour}
        for name, types in table.items():
            try:
                fmt = CredentialFormat(name)
            except ValueError:
                raise ValueError(f"credentials.{name}: not a credential format") from None
            if not isinstance(types, Mapping):
                raise ValueError(f"credentials.{name}: must be a table of type = colour")
            parsed: dict[str, Colour] = {}
            for type_name, label in types.items():
                if label not in by_label:
                    raise ValueError(
                        f"credentials.{name}.{type_name}: must be one of {sorted(by_label)}"
                    )
                parsed[str(type_name)] = by_label[label]
            if _DEFAULT not in parsed:
                raise ValueError(f"credentials.{name}.default: missing")
            colours[fmt] = MappingProxyType(parsed)
        return cls(MappingProxyType(colours))

    def accepts(self, fmt: CredentialFormat) -> bool:
        """Whether this policy gives credentials of ``fmt`` a colour at all."""
        return fmt in self.colours

    def colour_of(self, credential: Credential) -> Colour:
        """The colour a valid credential shows; KeyError for a format the policy does not take."""
        types = self.colours[credential.format]
        return types.get(credential.type, types[_DEFAULT])
