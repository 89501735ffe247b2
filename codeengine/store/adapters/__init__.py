"""The Redis adapters of the store port, one module per kind of state.

:class:`codeengine.store.redisstore.RedisStore` is all of them in one object; each module
says which keys of :mod:`codeengine.store.keyspace` it owns.

* ``_base``: the settings and the plumbing they share (deadlines, WAIT); no key.
* ``subjects``: subject records, status writes, audit trails and chains.
* ``display``: display tokens, read with the record in one MGET (the hot path).
* ``trust``: the sealed keyring, the trust list, revoked codes and keys.
* ``scans``: the per-city scan log.
* ``changes``: the per-city change log (every audited write, for the records service).
* ``batches``: bulk risk imports, their progress and rollback.
* ``appeals``: appeals and the override an upheld one applies.
* ``fusion``: aliases bound to subjects, and licences.
* ``leases``: the per-city write leases of the fence keeper.
* ``records``: the records service's published status (read only, for the ops console).
"""

__all__: list[str] = []
