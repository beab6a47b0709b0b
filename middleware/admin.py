"""What the dashboard and the CLI ask of a store: filters, pages, keyspace statistics, audit entries."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from .glob import escape_glob
from .records import COMPLETED, IN_FLIGHT, Record

STATES = (IN_FLIGHT, COMPLETED)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class RecordFilter:
    """Which records to list. Every value is literal: glob characters in user input match only themselves."""

    key: str = ""  # substring of the idempotency key
    state: str = ""  # in_flight | completed
    method: str = ""
    route: str = ""  # exact route template
    status_class: str = ""  # 2xx | 3xx | 4xx | 5xx

    def __post_init__(self) -> None:
        if self.state and self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        if self.status_class and self.status_class not in STATUS_CLASSES:
            raise ValueError(f"status class must be one of {', '.join(STATUS_CLASSES)}")
        if len(self.key) > 255 or len(self.route) > 1000 or len(self.method) > 16:
            raise ValueError("filter value too long")

    def pattern(self, prefix: str) -> str:
        """A SCAN MATCH pattern that narrows the scan on the server; `accepts` makes the final decision."""
        method = escape_glob(self.method.upper()) if self.method else "*"
        route = escape_glob(self.route) if self.route else "*"
        key = f"*{escape_glob(self.key)}*" if self.key else "*"
        return f"{escape_glob(prefix)}:{{*}}:{method}:{route}:{key}"

    def accepts(self, record: Record) -> bool:
        if self.key and self.key not in record.key:
            return False
        if self.state and record.state != self.state:
            return False
        if self.method and record.method != self.method.upper():
            return False
        if self.route and record.route != self.route:
            return False
        return not self.status_class or (record.state == COMPLETED and f"{record.status // 100}xx" == self.status_class)


@dataclass
class RecordPage:
    records: list[Record]
    cursor: int  # where the next scan step starts; 0 when the keyspace was scanned to its end
    scanned: int  # keys the scan looked at for this page

    @property
    def done(self) -> bool:
        return self.cursor == 0


@dataclass
class KeyspaceStats:
    """Counts from a bounded scan: exact when `complete`, else lower bounds ("at least")."""

    records: int = 0
    in_flight: int = 0
    completed: int = 0
    stored_bytes: int = 0
    scanned: int = 0
    complete: bool = True
    oldest_lock: Record | None = None
    stuck: list[Record] = field(default_factory=list)


def is_stuck(record: Record, now_ms: int) -> bool:
    """An in-flight record whose heartbeat is late (its owner is probably gone) or that has outlived its lease."""
    if record.state != IN_FLIGHT or record.lease_ms <= 0:
        return False
    heartbeat_late = now_ms - record.renewed_ms > record.lease_ms / 2
    held_too_long = now_ms - record.created_ms > record.lease_ms
    return heartbeat_late or held_too_long


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class AuditEntry:
    """One manual action, as kept in the store's capped audit list and logged."""

    at_ms: int
    actor: str
    action: str  # evict | bulk_evict | release | set_ttl
    record_key: str
    result: str  # ok | not_found | refused | error
    ttl_before_ms: int | None = None
    ttl_after_ms: int | None = None
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditEntry:
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})
