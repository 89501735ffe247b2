"""HTTP plumbing shared by the issuer and the verifier (aiohttp + uvloop).

The core stays free of aiohttp; this adapter package holds what both services need: health
endpoints, the service middleware, problem bodies, access control, metrics, typed application
state, and the worker that serves an app on a shared port (``python -m codeengine.web.worker``;
not imported here, so that running it as a module loads it once).
"""
