"""Admission's decisions without sockets: the in-flight and lag signals, the per-source count,
its exempt networks, and which idle connection makes room."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

from codeengine.web.admission import EVICT_SCAN, Admission, Sources, evict_idle


class FakeTransport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


def test_the_in_flight_limit_and_the_lag_each_refuse() -> None:
    admission = Admission(2, max_lag_s=0.05)
    admission.in_flight = 1
    assert not admission.full()
    admission.in_flight = 2
    assert admission.full()
    admission.in_flight = 0
    admission.note_lag(0.06)
    assert admission.full()
    admission.note_lag(0.05)
    assert not admission.full(), "at the limit is not past it"


def test_no_limit_refuses_nothing() -> None:
    admission = Admission(0)
    admission.in_flight = 10**9
    admission.note_lag(0.0)
    assert not admission.full()


def test_a_source_is_capped_and_a_closed_connection_gives_its_place_back() -> None:
    sources = Sources(2)
    first, second, third = FakeTransport(), FakeTransport(), FakeTransport()
    assert sources.admit("10.0.0.1", first)  # type: ignore[arg-type]
    assert sources.admit("10.0.0.1", second)  # type: ignore[arg-type]
    assert not sources.admit("10.0.0.1", third)  # type: ignore[arg-type]
    assert sources.admit("10.0.0.2", third), "another source has its own places"  # type: ignore[arg-type]
    first.closing = True
    assert sources.admit("10.0.0.1", FakeTransport())  # type: ignore[arg-type]
    assert sources.held("10.0.0.1") == 2


def test_exempt_networks_have_no_cap() -> None:
    sources = Sources(1, [ip_network("10.8.0.0/16"), ip_network("fd00::/8")])
    for host in ("10.8.1.2", "fd00::1%eth0"):
        assert all(sources.admit(host, FakeTransport()) for _ in range(5))  # type: ignore[arg-type]
    assert sources.admit("10.9.0.1", FakeTransport())  # type: ignore[arg-type]
    assert not sources.admit("10.9.0.1", FakeTransport())  # type: ignore[arg-type]
    assert sources.admit("not an address", FakeTransport())  # type: ignore[arg-type]
    assert not sources.admit("not an address", FakeTransport())  # type: ignore[arg-type]


def test_closed_connections_of_many_sources_are_dropped_from_the_count() -> None:
    sources = Sources(10, max_tracked=0)
    for index in range(5_000):
        transport = FakeTransport()
        assert sources.admit(f"10.1.{index // 256}.{index % 256}", transport)  # type: ignore[arg-type]
        transport.closing = True
    # Tracked entries never grow far past the floor of 1,024 while nothing stays open.
    assert sources._tracked <= 1_025
    assert len(sources._held) <= 1_025


@dataclass
class Lane:
    busy: bool = False
    idle_since: int = 0
    closed: bool = False

    def close(self) -> None:
        self.closed = True


def test_an_idle_connection_from_before_the_tick_makes_room() -> None:
    lanes = [Lane(busy=True), Lane(idle_since=5), Lane(closed=True), Lane(idle_since=3)]
    assert evict_idle(lanes, tick=5)
    assert [lane.closed for lane in lanes] == [False, False, True, True]
    assert not evict_idle(lanes, tick=5), "busy, new or already closed: none to close"


def test_the_search_for_an_idle_connection_is_bounded() -> None:
    lanes = [Lane(busy=True) for _ in range(EVICT_SCAN)] + [Lane()]
    assert not evict_idle(lanes, tick=1)
    assert not lanes[-1].closed
