"""The terminal SDK: verify codes offline with a cached trust list and revocation list.

A scan terminal embeds :class:`OfflineVerifier`. It gives the same reason codes as the online
verifier, from a trust list it refreshes while the network is up. Past the list's maximum age
every answer is ``TRUST_LIST_STALE``, because a stale list may still trust a revoked key.
"""

from verifier.offline.sdk import CachedList, OfflineVerifier

__all__ = ["CachedList", "OfflineVerifier"]
