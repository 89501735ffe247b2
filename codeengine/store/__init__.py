"""The store: the port the services use, the Redis Cluster client, Lua scripts and adapters.

Everything about state lives here: Redis key names (``keyspace``), the project's own cluster
client (``cluster``), the server-side scripts (``scripts``, their files in ``lua/``, their
result codes in ``results``), the per-city write fence (``fence``) and the adapter that
implements the port on Redis (``redisstore``).
"""

__all__: list[str] = []
