"""The cryptographic profile: international (Ed25519, HMAC-SHA-256, AES-256-GCM) or national
(国密: SM2, HMAC-SM3, SM4-GCM), chosen by the ``crypto.profile`` setting.

A profile selects the primitives; it is handed to the code that uses them as an argument (the
services and commands read the setting once and pass ``profile.mac`` or the profile on), never
looked up from a global. What each primitive is used for: docs/security.md, "Choosing the
cryptographic profile".

The profile is chosen once per store: pseudonyms are part of every Redis key, so the store
records the profile it was seeded in (inside the sealed keyring, codeengine.code.keyvault) and a
service whose setting differs refuses to start. The signing suite is the one thing that moves
under live data, by a staged rotation; ``suite`` is only what a new keyring starts with.
"""

from __future__ import annotations

__all__ = [
    "INTERNATIONAL",
    "NATIONAL",
    "PROFILE_SETTING",
    "Profile",
    "ProfileName",
    "profile_named",
]

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from codeengine.code.macs import MACAlgorithm
from codeengine.code.national import national_support
from codeengine.code.sm2 import SM2
from codeengine.code.suites import ED25519, SigningSuite

PROFILE_SETTING: Final = "crypto.profile"
"""The setting that names the profile, for messages that tell the operator what to change."""


class ProfileName(StrEnum):
    """The profiles a deployment can choose; the value is the setting's spelling."""

    INTERNATIONAL = "international"
    NATIONAL = "national"


@dataclass(frozen=True, slots=True)
class Profile:
    """The primitives one profile uses."""

    name: ProfileName
    mac: MACAlgorithm
    """Pseudonyms, alias and licence hashes, record and token seals, audit-chain entries."""
    suite: SigningSuite
    """What a new keyring (and trust anchor) signs with; a rotation may change it later."""
    keyring_cipher: str
    """What seals the keyring at rest under the KEK, as docs name it."""

    def check_support(self) -> None:
        """Return if the linked libraries offer this profile's primitives, else
        CryptoUnavailable naming what is missing (the national profile on an OpenSSL built
        without SM3 or SM4)."""
        if self.name is ProfileName.NATIONAL:
            national_support()


INTERNATIONAL: Final = Profile(
    ProfileName.INTERNATIONAL, MACAlgorithm.HMAC_SHA256, ED25519, "A256GCM"
)
NATIONAL: Final = Profile(ProfileName.NATIONAL, MACAlgorithm.HMAC_SM3, SM2, "SM4-GCM")


def profile_named(name: str) -> Profile:
    """The profile the setting names; ValueError (naming the setting) for any other word."""
    for profile in (INTERNATIONAL, NATIONAL):
        if profile.name.value == name:
            return profile
    choices = ", ".join(p.value for p in ProfileName)
    raise ValueError(f"{PROFILE_SETTING}: {name!r} is not a profile (choose {choices})")
