"""The issuer service: generate (生码), display (亮码), convert (赋码/转码), trust list.

Nothing is imported here, as in ``verifier``: importing one module of the package must not
start a server's worth of imports. The service's app factory is ``issuer.app.create_app``.
"""

__all__: list[str] = []
