"""Card-code fusion end to end, against real issuer and verifier processes and the cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import HTTPCalls, free_port
from tests.e2e.test_services import worker
from tests.integration.apps import new_person_id

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


@dataclass
class Service(HTTPCalls):
    """One service's port and the API keys to call it with."""

    port: int
    keys: dict[str, str]


def test_a_card_scans_as_its_person_follows_a_conversion_and_stops_when_unbound(
    cluster: DevCluster, key_files: dict[str, str]
) -> None:
    document = json.loads(Path(key_files["keys_credentials_file"]).read_text())
    keys = {client["scopes"][0]: client["key"] for client in document["clients"]}
    nodes = cluster.nodes_spec
    issuer_port, verifier_port = free_port(), free_port()
    with (
        worker("issuer", issuer_port, cluster_nodes=nodes, **key_files),
        worker("verifier", verifier_port, cluster_nodes=nodes, **key_files),
    ):
        issuer, gate = Service(issuer_port, keys), Service(verifier_port, keys)
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
