"""The one ACL rule of the services' Redis user: the commands they send, and nothing else.

The services reach Redis only through :mod:`codeengine.store` (the cluster client, its
adapters and their Lua scripts), so this list is all they may run. A script runs with the
permissions of the user that called EVALSHA: the commands the scripts in ``store/lua`` call
are here too. A service that is taken over therefore cannot empty the store (FLUSHALL,
FLUSHDB), reconfigure or stop a node (CONFIG, DEBUG, SHUTDOWN, MODULE), read the traffic of
others (MONITOR, CLIENT), change users (ACL), or list every key in one call (KEYS).
``tests/unit/test_acl.py`` checks that every command the store's code names is listed.

The dev and test clusters (:mod:`codeengine.ops.devcluster`) create the user with this rule;
a production cluster's operator gives the services' user the same one (docs/operations.md).
"""

from __future__ import annotations

__all__ = [
    "RECORDS_ACL_RULE",
    "RECORDS_COMMANDS",
    "RECORDS_KEYS",
    "SCRIPT_COMMANDS",
    "SERVICE_ACL_RULE",
    "SERVICE_COMMANDS",
]

CLIENT_COMMANDS = (
    # Plumbing of the cluster client: the slot map, liveness, redirects, acknowledged writes.
    "cluster|slots",
    "ping",
    "asking",
    "wait",
    # Scripts run by SHA, loaded again on a node that lost them.
    "evalsha",
    "script|load",
)
"""What codeengine.store.cluster sends of its own accord."""

ADAPTER_COMMANDS = (
    "get",
    "mget",
    "pttl",
    "type",
    "scan",
    "hgetall",
    "hmget",
    "hvals",
    "hset",
    "hsetnx",
    "sadd",
    "sscan",
    "rpush",
    "ltrim",
    "lrange",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zrevrange",
    "zremrangebyrank",
    "xrange",
    "xrevrange",
    # Claims of offline scan ids (SET NX EX).
    "set",
)
"""What the adapters send directly (reads, batch bookkeeping, scans of the audit streams)."""

SCRIPT_COMMANDS = (
    "get",
    "set",
    "del",
    "exists",
    "incr",
    "pexpire",
    "pttl",
    "time",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "zadd",
    "zcard",
    "zremrangebyscore",
    "xadd",
    "xrevrange",
)
"""What the Lua scripts under codeengine/store/lua call."""

SERVICE_COMMANDS = tuple(dict.fromkeys(CLIENT_COMMANDS + ADAPTER_COMMANDS + SCRIPT_COMMANDS))
"""Every command the services' user may run, each once."""

SERVICE_ACL_RULE = "resetchannels ~* -@all " + " ".join(f"+{c}" for c in SERVICE_COMMANDS)
"""The ACL rule (after ``ACL SETUSER <user> on >password``): every key, no pub/sub channel,
no command but :data:`SERVICE_COMMANDS`."""

RECORDS_COMMANDS = (
    "cluster|slots",
    "ping",
    "asking",
    # The consumer group of each stream (its position: what is stored), reads and trims.
    "xgroup|create",
    "xgroup|setid",
    "xtrim",
    "xrange",
    "xinfo|groups",
    "xinfo|stream",
    # The cycle in flight (codeengine.records.consumer.INTENT_KEY) and the service's status.
    "get",
    "set",
    "del",
    "hset",
)
"""Every command the records service sends (codeengine.records)."""

RECORDS_KEYS = "~ce:scan:* ~ce:chg:* ~ce:rec:*"
"""The keys it may touch: the scan and change streams, and its own."""

RECORDS_ACL_RULE = f"resetchannels {RECORDS_KEYS} -@all " + " ".join(
    f"+{c}" for c in RECORDS_COMMANDS
)
"""The ACL rule of the records service's user: it reads, acknowledges and trims the streams, and
nothing else; it can neither read a subject nor write one."""
