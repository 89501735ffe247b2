"""HTTP plumbing shared by the issuer and the verifier (aiohttp + uvloop).

The core stays free of aiohttp; this adapter package holds what both services need: health
endpoints, the worker that serves an app on a shared port, and typed application state.
"""

from codeengine.web.health import HEALTH_ROUTES, READINESS_CHECKS, ReadinessCheck
from codeengine.web.worker import serve, worker_main

__all__ = ["HEALTH_ROUTES", "READINESS_CHECKS", "ReadinessCheck", "serve", "worker_main"]
