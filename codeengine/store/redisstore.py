"""The store on a sharded Redis Cluster, through the project's own cluster client.

:class:`RedisStore` is the composition of the adapters in :mod:`codeengine.store.adapters`,
one per kind of state, over one :class:`codeengine.store.cluster.FastCluster`. Every call runs
under a deadline and every failure reaches the caller as :class:`StoreUnavailable`
(docs/architecture.md, pitfalls).
"""

from __future__ import annotations

__all__ = ["RedisStore", "StoreSettings"]

from codeengine.store.adapters._base import StoreSettings
from codeengine.store.adapters.appeals import AppealAdapter
from codeengine.store.adapters.batches import BatchAdapter
from codeengine.store.adapters.changes import ChangeAdapter
from codeengine.store.adapters.display import DisplayAdapter
from codeengine.store.adapters.fusion import FusionAdapter
from codeengine.store.adapters.leases import LeaseAdapter
from codeengine.store.adapters.records import RecordsStatusAdapter
from codeengine.store.adapters.scans import ScanAdapter
from codeengine.store.adapters.subjects import SubjectAdapter
from codeengine.store.adapters.trust import TrustAdapter


class RedisStore(
    AppealAdapter,
    SubjectAdapter,
    DisplayAdapter,
    TrustAdapter,
    ScanAdapter,
    ChangeAdapter,
    BatchAdapter,
    FusionAdapter,
    LeaseAdapter,
    RecordsStatusAdapter,
):
    """The :class:`codeengine.store.port.Store` on a Redis Cluster.

    Each adapter's ``__init__`` registers its scripts and hands on to the next (one shared
    client); appeals come before subjects because an appeal adapter is a subject adapter.
    """
