"""The verifier service: online verify (扫码/验码); ``verifier.offline`` is the terminal SDK."""

from verifier.app import create_app

__all__ = ["create_app"]
