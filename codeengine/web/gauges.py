"""Gauges of a worker's state, read when ``/metrics`` is rendered rather than kept up to date.

The signing key's remaining validity, the trust list's age and the city lease change with the
clock or in background tasks, never per request; reading them at a rendering (at most once a
``service.metrics_cache_s``) costs nothing on the hot paths and is exact at that moment. With
several workers the worker that renders (the one holding the management port) reports its own
view: every worker reads the same keyring, trust list and lease from the store, each within a
refresh interval of the others.

* ``codeengine_build_info{service, version, python, implementation}``: 1.
* ``codeengine_signing_key_remaining_seconds`` (issuers): seconds until the keyring has no key
  to sign with: the later end of the current and the staged key's validity; 0 once none is
  valid or no keyring is loaded.
* ``codeengine_trust_list_age_seconds`` (verifiers): seconds since the trust list was last read
  from the store, or since the worker started when it never was.
* ``codeengine_fence_epoch{city}`` and ``codeengine_fence_holder{city, role}`` (issuers; series
  only at a city's endpoints): the city lease's epoch and who holds it (1 for the holding role,
  0 for the other), as this endpoint last saw them. An issuer that holds no lease declares the
  families without a series, as a labelled metric nobody has counted yet shows.
"""

from __future__ import annotations

__all__ = ["KeyView", "ServiceGauges"]

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from codeengine.code.fencing import Lease, Role
from codeengine.code.keyring import Keyring
from codeengine.metrics import build_labels


class KeyView(Protocol):
    """What the gauges read of a worker's keys (codeengine.web.runtime.KeyState)."""

    @property
    def keyring(self) -> Keyring | None: ...

    @property
    def refreshed_at(self) -> float | None: ...


def signing_key_remaining_s(keyring: Keyring | None, now: float) -> float:
    """Seconds from ``now`` until ``keyring`` has no key to sign with: the current key's end,
    or a staged key's when it starts signing before that; 0 when no key signs now."""
    if keyring is None:
        return 0.0
    ring = keyring.promote_at(int(now))
    current = ring.current
    if not current.not_before <= now <= current.not_after:
        return 0.0
    end = current.not_after
    staged = ring.next
    if staged is not None and staged.not_before <= end:
        end = max(end, staged.not_after)
    return float(end - now)


class ServiceGauges:
    """A Prometheus collector of one worker's state gauges (see the module's docstring)."""

    def __init__(
        self,
        service: str,
        keys: KeyView,
        clock: Callable[[], float],
        *,
        signs: bool,
        lease: Callable[[], tuple[int, Lease] | None] = lambda: None,
    ) -> None:
        self._service = service
        self._keys = keys
        self._clock = clock
        self._signs = signs
        self._lease = lease
        self._started_at = clock()
        self._build = {"service": service, **build_labels()}

    def collect(self) -> Iterator[Metric]:
        """The gauges as they are now."""
        now = self._clock()
        build = GaugeMetricFamily(
            "codeengine_build_info",
            "1, labelled with what this service runs: its version, Python's version and build.",
            labels=list(self._build),
        )
        build.add_metric(list(self._build.values()), 1.0)
        yield build
        if self._signs:
            yield GaugeMetricFamily(
                "codeengine_signing_key_remaining_seconds",
                "Seconds until the keyring has no key to sign with (the later end of the "
                "current and the staged key); 0 when none is valid now.",
                value=signing_key_remaining_s(self._keys.keyring, now),
            )
            yield from self._fence()
        else:
            refreshed = self._keys.refreshed_at
            since = self._started_at if refreshed is None else refreshed
            yield GaugeMetricFamily(
                "codeengine_trust_list_age_seconds",
                "Seconds since this verifier last read the trust list from the store (since it "
                "started, when it never has).",
                value=max(0.0, now - since),
            )

    def _fence(self) -> Iterator[Metric]:
        epoch = GaugeMetricFamily(
            "codeengine_fence_epoch",
            "The epoch of the city's write lease as this endpoint last saw it (it grows with "
            "every change of holder).",
            labels=["city"],
        )
        holder = GaugeMetricFamily(
            "codeengine_fence_holder",
            "1 for the role (primary, backup) that holds the city's write lease as this "
            "endpoint last saw it, 0 for the other; both 0 while nobody holds it.",
            labels=["city", "role"],
        )
        seen = self._lease()
        if seen is not None:
            city, lease = seen
            epoch.add_metric([str(city)], float(lease.epoch))
            for role in Role:
                holder.add_metric([str(city), role.value], 1.0 if lease.owner is role else 0.0)
        yield epoch
        yield holder
