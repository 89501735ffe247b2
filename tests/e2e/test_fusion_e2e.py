"""Card-code fusion end to end, against real issuer and verifier processes and the cluster."""

from __future__ import annotations

import pytest

from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import Workers, dev_keys, service_workers
from tests.integration.apps import new_person_id

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


def test_a_card_scans_as_its_person_follows_a_conversion_and_stops_when_unbound(
    cluster: DevCluster, key_files: dict[str, str]
) -> None:
    keys = dev_keys(key_files)
    settings = dict(key_files, cluster_nodes=cluster.nodes_spec)
    with (
        service_workers(Workers, "issuer", 1, None, keys, settings) as issuer,
        service_workers(Workers, "verifier", 1, None, keys, settings) as gate,
    ):
        body = {"kind": "person", "id": new_person_id(), "city": 320500}
        subject = issuer.call("POST", "/v1/subjects", json_body=body, scope="generate").json()
        path = f"/v1/subjects/{subject['subject']}"
        card = "E2E123456"
        bound = issuer.call("POST", f"{path}/aliases", scope="fusion",
                            json_body={"type": "ssc_card", "value": card})  # fmt: skip
        assert bound.status == 201, bound.body

        def scan() -> dict[str, object]:
            item = {"code": f"SSC:{card}\n", "terminal": "gate-1", "city": 320500}
            answer = gate.call("POST", "/v1/verify", json_body=item, scope="verify")
            assert answer.status == 200, answer.body
            result: dict[str, object] = answer.json()
            return result

        assert (scan()["valid"], scan()["colour"]) == (True, "green")
        change = {"colour": "yellow", "reason": "e2e", "if_version": subject["version"]}
        converted = issuer.call("POST", f"{path}/status", json_body=change, scope="convert")
        assert converted.status == 200, converted.body
        assert scan()["colour"] == "yellow"

        alias_id = bound.json()["id"]
        unbound = issuer.call("DELETE", f"{path}/aliases/{alias_id}", scope="fusion")
        assert unbound.status == 200, unbound.body
        assert (scan()["valid"], scan()["reason"]) == (False, "UNKNOWN_ALIAS")
