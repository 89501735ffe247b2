"""The terminal SDK: verify codes offline with a cached trust list and revocation list.

A scan terminal embeds :class:`OfflineVerifier`. It gives the same reason codes as the online
verifier, from a trust list it refreshes while the network is up. Past the list's maximum age
every answer is ``TRUST_LIST_STALE``, because a stale list may still trust a revoked key.

Configured with the trust anchors (:func:`load_anchors`), it takes only the signed lists
(``/v1/trust/signed``, ``/v1/revocations/signed``) and refuses, with a ``ListRefused`` whose
``reason`` is stable, one that is unsigned, signed by another key, altered, expired, or older
than the one it holds.

Configured with :func:`load_foreign_trust` too, it verifies EU Digital COVID Certificates
(``HC1:``) and SMART Health Cards (``shc:/``) against their own trust lists, and shows the colour
the credential policy gives each type (docs/formats.md).
"""

from codeengine.code.errors import ListRefused
from verifier.offline.sdk import CachedList, OfflineVerifier, load_anchors, load_foreign_trust

__all__ = ["CachedList", "ListRefused", "OfflineVerifier", "load_anchors", "load_foreign_trust"]
