"""The test clusters' ports: never where the kernel hands out ports for outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

from codeengine.ops.devcluster import BUS_PORT_OFFSET, NODE_COUNT, find_free_base_port


def _ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_every_port_and_bus_port_lies_below_the_outgoing_range() -> None:
    # A drill restarts a node on its ports; an outgoing connection made meanwhile must not be
    # able to hold one of them (a restart once failed on a bus port taken that way).
    base = find_free_base_port()
    assert base + NODE_COUNT - 1 + BUS_PORT_OFFSET < _ephemeral_start()


def test_a_taken_port_moves_the_range() -> None:
    base = find_free_base_port()
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", base + 2 + BUS_PORT_OFFSET))
        held.listen()
        other = find_free_base_port()
    taken = base + 2
    assert not other <= taken < other + NODE_COUNT
