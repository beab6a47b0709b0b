"""idemscope middleware: Idempotency-Key for ASGI apps on Redis, with Prometheus metrics."""

from __future__ import annotations

__version__ = "0.2.0"

from .admin import AuditEntry, KeyspaceStats, RecordFilter, RecordPage, is_stuck
from .asgi import IdempotencyMiddleware
from .errors import IdempotencyError, StoreError
from .keys import InvalidKey, authorization_scope, parse_key
from .memory_store import MemoryStore
from .metrics import IdempotencyMetrics, MetricsApp, expose_metrics, metrics_app
from .records import Claim, Record, RequestInfo, StoredResponse
from .redis_store import RedisStore
from .routes import ResolvedRoute, RouteOptions, idempotent
from .store import Store

__all__ = [
    "AuditEntry",
    "Claim",
    "IdempotencyError",
    "IdempotencyMetrics",
    "IdempotencyMiddleware",
    "InvalidKey",
    "KeyspaceStats",
    "MemoryStore",
    "MetricsApp",
    "Record",
    "RecordFilter",
    "RecordPage",
    "RedisStore",
    "RequestInfo",
    "ResolvedRoute",
    "RouteOptions",
    "Store",
    "StoreError",
    "StoredResponse",
    "authorization_scope",
    "expose_metrics",
    "idempotent",
    "is_stuck",
    "metrics_app",
    "parse_key",
]
