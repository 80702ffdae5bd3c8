"""The login transaction (state machine) and the sealed transient store.

See :mod:`.transaction` for the states and the diagram, :mod:`.store` for the store
interface and backends, :mod:`.sealing` for AES-256-GCM sealing, and
:mod:`.login_store` for typed persistence. T-01, T-02 in docs/toms.md.
"""

from __future__ import annotations

from .errors import (
    CorruptTransaction,
    IllegalTransition,
    LoginError,
    SealError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TransactionExpired,
    TTLRefused,
)
from .login_store import PURPOSE_CODE, PURPOSE_STARTED, PURPOSE_UPSTREAM, LoginStore
from .sealing import Sealer
from .store import (
    MAX_TTL,
    MemoryBackend,
    RedisBackend,
    SealedStore,
    TransientBackend,
    TransientStore,
    memory_store,
    redis_store,
)
from .transaction import (
    CODE_LIFETIME,
    MAX_LIFETIME,
    AppRequest,
    CodeIssued,
    Finished,
    LoginState,
    Started,
    UpstreamPending,
    choose_idp,
    fail,
    issue_code,
    redeem,
    send_upstream,
    start,
)

__all__ = [
    "CODE_LIFETIME",
    "MAX_LIFETIME",
    "MAX_TTL",
    "PURPOSE_CODE",
    "PURPOSE_STARTED",
    "PURPOSE_UPSTREAM",
    "AppRequest",
    "CodeIssued",
    "CorruptTransaction",
    "Finished",
    "IllegalTransition",
    "LoginError",
    "LoginState",
    "LoginStore",
    "MemoryBackend",
    "RedisBackend",
    "SealError",
    "SealedStore",
    "Sealer",
    "Started",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TTLRefused",
    "TransactionExpired",
    "TransientBackend",
    "TransientStore",
    "UpstreamPending",
    "choose_idp",
    "fail",
    "issue_code",
    "memory_store",
    "redeem",
    "redis_store",
    "send_upstream",
    "start",
]
