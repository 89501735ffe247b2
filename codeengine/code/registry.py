"""The suites every party accepts by default: Ed25519, ES256 and SM2 verify everywhere.

Verifying and signing are chosen apart. Every verifier, the offline SDK and the trust-list
reader accept all three suites, so that a terminal already understands an SM2 key (and its
codes) when a rotation to the national profile publishes one: a terminal whose SDK did not know
the suite would refuse the whole trust list that carries it. What signs is the keyring's
choice; a new keyring signs with ``DEFAULT_SUITE`` (Ed25519) unless told otherwise.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SUITE", "DEFAULT_SUITES"]

from typing import Final

from codeengine.code.sm2 import SM2
from codeengine.code.suites import DEFAULT_SUITE, ED25519, ES256, SuiteRegistry

DEFAULT_SUITES: Final = SuiteRegistry([ED25519, ES256, SM2])
