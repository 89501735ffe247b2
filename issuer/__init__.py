"""The issuer service: generate (生码), display (亮码), convert (赋码/转码), trust list."""

from issuer.app import create_app

__all__ = ["create_app"]
