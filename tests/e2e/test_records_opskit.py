"""The ops kit against a live records service: every records metric the Grafana dashboard and
the alert rules query is a family that ``codeengine serve records`` declares on its management
port, and the gauge the down alert watches is there from the service's first cycle.

The code services' metrics are checked the same way against live issuers and verifiers
(tests/e2e/test_verifier_e2e.py); this is the records service's half.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from codeengine.code.model import CITIES
from codeengine.ops.devcluster import DevCluster
from tests.e2e.exposition import (
    alert_exprs,
    dashboard_exprs,
    declared,
    exposed,
    metric_names,
    records_families,
    records_service_metric,
)
from tests.e2e.helpers import eventually
from tests.e2e.test_records_e2e import HANG_GUARD_S, records_service

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5.0) as response:
        text: str = response.read().decode()
    return text


def _lag_series(exposition: str) -> set[str]:
    return {
        line.split("{", 1)[1]
        for line in exposition.splitlines()
        if line.startswith("codeengine_records_lag_seconds{")
    }


def test_every_records_metric_the_dashboard_and_alerts_use_is_exposed(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    records = records_families()
    dashboard = {n for n in metric_names(dashboard_exprs()) if records_service_metric(n, records)}
    alerts = {n for n in metric_names(alert_exprs()) if records_service_metric(n, records)}
    assert len(dashboard) >= 7 and len(alerts) >= 2, "the parse found the records queries"
    with records_service(cluster, key_files, tmp_path) as service:
        # The lag gauges: one series per table and city once the first lag is measured (a
        # second after start); CodeengineRecordsDown fires when they are absent.
        lagged = eventually(
            lambda: _lag_series(_scrape(service.management_port)),
            lambda series: len(series) == 2 * len(CITIES),
            HANG_GUARD_S,
        )
        assert len(lagged) == 2 * len(CITIES), sorted(lagged)
        families = declared(_scrape(service.management_port))
    missing = sorted(name for name in dashboard | alerts if not exposed(name, families))
    assert not missing, f"used by the dashboard or the alerts, not exposed by records: {missing}"
    # And the module's families are what the service declares: none left out of the check.
    assert {name for name in records if not name.endswith("_created")} <= families.keys()
