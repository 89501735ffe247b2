"""One worker process: serve one service's app on a port shared with its siblings.

Workers bind with SO_REUSEPORT, so the kernel spreads connections across them; any number can run
side by side because every piece of state lives in the cluster. On SIGTERM or SIGINT a worker
stops accepting, lets in-flight requests finish (up to the shutdown timeout) and closes idle
keep-alive connections, so a rolling restart resets no client connection.
"""

from __future__ import annotations

__all__ = ["serve", "worker_main"]

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvloop
from aiohttp import web

from codeengine.settings import (
    ENV_PREFIX,
    ServiceSettings,
    Settings,
    SettingsError,
    load_settings,
)

AppFactory = Callable[[Settings], web.Application]
SERVICES = {"issuer": "issuer.app", "verifier": "verifier.app"}

log = logging.getLogger("codeengine.worker")


async def serve(app: web.Application, host: str, port: int, service: ServiceSettings) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        # A bare AppRunner keeps idle connections for about an hour (DESIGN.md pitfalls).
        keepalive_timeout=service.keepalive_timeout_s,
        shutdown_timeout=service.shutdown_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True, backlog=service.backlog)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process: ``python -m codeengine.web.worker --service issuer``."""
    parser = argparse.ArgumentParser(prog="codeengine-worker")
    parser.add_argument("--service", choices=sorted(SERVICES), required=True)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.service}[%(process)d] %(levelname)s %(message)s",
    )
    config = args.config or os.environ.get(f"{ENV_PREFIX}CONFIG")
    try:
        settings = load_settings(Path(config) if config else None)
    except SettingsError as exc:
        print(f"{args.service}: settings: {exc}", file=sys.stderr)
        return 2
    factory: AppFactory = importlib.import_module(SERVICES[args.service]).create_app
    port = (
        settings.service.issuer_port if args.service == "issuer" else settings.service.verifier_port
    )
    uvloop.run(serve(factory(settings), settings.service.host, port, settings.service))
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
