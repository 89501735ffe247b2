"""The topic library (涉疫数据专题库): every scan and colour change, kept for weeks, queried.

The verifiers' scan streams and the issuers' change streams are consumed by one records service
(:mod:`codeengine.records.consumer`) into a columnar store (:mod:`codeengine.records.engine`:
ClickHouse, embedded by default). The table definitions live in one place
(:mod:`codeengine.records.schema`) for the embedded engine and a production cluster alike.
"""
