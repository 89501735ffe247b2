"""A crowd of verify clients on many connections, timing each answer by its status.

    python -m bench.crowd URL CODES_FILE CONNECTIONS SECONDS [--ignore-retry-after]

wrk times every answer alike and does not say which connection an answer came on, so it can
neither give the latency of the requests that were served apart from those refused, nor make
the refused client itself wait its ``Retry-After``. This client can: each connection sends one
verify at a time, and after a 503 waits the answer's ``Retry-After`` (as an HTTP client should,
RFC 9110 §10.2.3) unless told to ignore it. A request unanswered after ``TIMEOUT_S`` is a
timeout: its connection is closed and opened again. Only requests sent and answered inside the
measured window count. It prints one JSON document; ``bench/overload.py`` runs it pinned to
the load cores.

A request sent before the ``Retry-After`` of the refusal before it had passed is *early*
(only clients that ignore it send such). The latencies by status count from sending; the
document also gives the served ones counted from the later of sending and the end of that
``Retry-After`` (``ok_after_retry_after``): what the worker's own delay was, apart from the
wait it asked for, which a worker that stops reading after a refusal makes the early client
take anyway.
"""

from __future__ import annotations

__all__ = ["TIMEOUT_S", "main", "percentile"]

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import uvloop

TIMEOUT_S = 5.0
EARLY_SLACK_S = 0.005
"""A send this close before the Retry-After's end is on time: the loop's timer that a waiting
client sleeps on may fire a millisecond before the monotonic clock says it is due."""
CONNECT_BATCH = 200


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which ``share`` of the sorted ``values`` lie (nearest rank); 0 if none."""
    if not values:
        return 0.0
    rank = max(0, min(len(values) - 1, round(share * len(values) + 0.5) - 1))
    return values[rank]


class Crowd:
    """What the clients share: the requests to send, the window, and what was measured."""

    def __init__(self, requests: list[bytes], honour: bool, window: tuple[float, float]) -> None:
        self.requests = requests
        self.honour = honour
        self.window = window
        self.latencies: dict[int, list[float]] = {}
        self.ok_after_retry_after: list[float] = []
        self.early = 0
        self.timeouts = 0
        self.reconnects = 0
        self.clients: list[Client] = []
        self.next = 0

    def request(self) -> bytes:
        self.next = (self.next + 1) % len(self.requests)
        return self.requests[self.next]

    def record(self, status: int, sent: float, now: float, allowed: float) -> None:
        """One answer to a request sent at ``sent``, which the refusal before it asked to
        send no earlier than ``allowed``."""
        begin, end = self.window
        if begin <= sent and now <= end:
            self.latencies.setdefault(status, []).append(now - sent)
            self.early += sent < allowed - EARLY_SLACK_S
            if status == 200:
                self.ok_after_retry_after.append(now - max(sent, allowed))


class Client(asyncio.Protocol):
    """One connection: a verify, its answer, the next (after Retry-After, if refused)."""

    def __init__(self, crowd: Crowd, loop: asyncio.AbstractEventLoop) -> None:
        self.crowd = crowd
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent = 0.0
        self.allowed = 0.0
        """When the last refusal's Retry-After ends."""
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.sent = time.monotonic()
        self.waiting = True
        self.transport.write(self.crowd.request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        status = int(head[0].split()[1])
        now = time.monotonic()
        self.waiting = False
        self.crowd.record(status, self.sent, now, self.allowed)
        if status == 503:
            self.allowed = now + float(headers.get("retry-after", "1"))
        if headers.get("connection", "").lower() == "close":
            return  # connection_lost opens another
        if status == 503 and self.crowd.honour:
            self.loop.call_later(float(headers.get("retry-after", "1")), self.send)
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.crowd.reconnects += 1


async def _connect(crowd: Crowd, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    client = Client(crowd, loop)
    try:
        await loop.create_connection(lambda: client, host, port)
    except OSError:
        crowd.reconnects += 1
    crowd.clients.append(client)


async def run(
    url: str, requests: list[bytes], connections: int, seconds: float, honour: bool
) -> dict[str, Any]:
    """Connect the crowd, let it run ``seconds`` after a second of settling, report."""
    host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
    start = time.monotonic()
    crowd = Crowd(requests, honour, (start + 1.0, start + 1.0 + seconds))
    for first in range(0, connections, CONNECT_BATCH):
        count = min(CONNECT_BATCH, connections - first)
        await asyncio.gather(*(_connect(crowd, host, int(port)) for _ in range(count)))
    while time.monotonic() < crowd.window[1]:
        await asyncio.sleep(0.25)
        now = time.monotonic()
        for index, client in enumerate(crowd.clients):
            closed = client.transport is None
            if client.waiting and now - client.sent > TIMEOUT_S and not closed:
                if crowd.window[0] <= client.sent:
                    crowd.timeouts += 1
                assert client.transport is not None
                client.transport.abort()
                closed = True
            if closed and now < crowd.window[1]:
                replacement = Client(crowd, asyncio.get_running_loop())
                crowd.clients[index] = replacement
                try:
                    await asyncio.get_running_loop().create_connection(
                        lambda r=replacement: r,  # type: ignore[misc]
                        host,
                        int(port),
                    )
                except OSError:
                    pass
    for client in crowd.clients:
        if client.transport is not None:
            client.transport.abort()
    result: dict[str, Any] = {
        "connections": connections,
        "seconds": seconds,
        "honour_retry_after": honour,
        "timeouts": crowd.timeouts,
        "reconnects": crowd.reconnects,
        "early": crowd.early,
        "statuses": {},
    }
    every: list[float] = []
    for status, values in sorted(crowd.latencies.items()):
        values.sort()
        every += values
        result["statuses"][str(status)] = {
            "count": len(values),
            "p50_ms": 1000 * percentile(values, 0.5),
            "p99_ms": 1000 * percentile(values, 0.99),
            "max_ms": 1000 * values[-1],
        }
    every.sort()
    allowed = sorted(crowd.ok_after_retry_after)
    result["ok_after_retry_after"] = {
        "count": len(allowed),
        "p50_ms": 1000 * percentile(allowed, 0.5),
        "p99_ms": 1000 * percentile(allowed, 0.99),
        "max_ms": 1000 * (allowed[-1] if allowed else 0.0),
    }
    result["all"] = {
        "count": len(every),
        "p50_ms": 1000 * percentile(every, 0.5),
        "p99_ms": 1000 * percentile(every, 0.99),
        "max_ms": 1000 * (every[-1] if every else 0.0),
    }
    return result


def verify_requests(codes: Sequence[str], auth: str, host: str) -> list[bytes]:
    """One keep-alive ``POST /v1/verify`` per code, as bytes."""
    requests = []
    for code in codes:
        body = json.dumps(
            {"code": code, "terminal": "bench", "venue": "bench", "city": 320100}
        ).encode()
        head = (
            f"POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def main(argv: Sequence[str] | None = None) -> int:
    """Run the crowd against URL and print the JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench.crowd", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("codes_file")
    parser.add_argument("connections", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--ignore-retry-after", dest="honour", action="store_false")
    args = parser.parse_args(argv)
    codes = [line for line in open(args.codes_file).read().splitlines() if line]
    host = args.url.removeprefix("http://").rstrip("/")
    requests = verify_requests(codes, os.environ["BENCH_AUTH"], host)
    result = uvloop.run(run(args.url, requests, args.connections, args.seconds, args.honour))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
