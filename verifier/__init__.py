"""The verifier service: online verify (扫码/验码); ``verifier.offline`` is the terminal SDK.

Nothing is imported here: ``import verifier.offline`` runs this file first, and a terminal that
embeds the SDK must not load the service's server libraries (aiohttp, the Redis client, uvloop)
to do so. The service's app factory is ``verifier.app.create_app``.
"""

__all__: list[str] = []
