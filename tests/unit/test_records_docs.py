"""docs/records.md cannot drift from the code: its cluster DDL is what the schema renders."""

from __future__ import annotations

import re
from pathlib import Path

from codeengine.records.schema import cluster_statements

DOC = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def test_the_cluster_ddl_in_the_doc_is_what_the_schema_renders() -> None:
    found = re.search(
        r"<!-- cluster-ddl:begin -->\n```sql\n(.*?)\n```\n<!-- cluster-ddl:end -->",
        DOC.read_text(encoding="utf-8"),
        re.S,
    )
    assert found, "docs/records.md has the cluster-ddl block"
    assert found.group(1) == ";\n\n".join(cluster_statements("codeengine")) + ";"
