"""The store: the port the services use, the Redis Cluster client, Lua scripts and adapters.

Everything about state lives here: Redis key names (``keyspace``), the project's own cluster
client (``cluster``), the server-side scripts (``scripts``, their files in ``lua/``, their
result codes in ``results``), the per-city write fence (``fence``) and the adapters that
implement the port on Redis, one per kind of state (``adapters``), composed in ``redisstore``.
"""

__all__: list[str] = []
