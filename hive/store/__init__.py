"""Durable state: SQLite through apsw (WAL), one writer, migrations by version."""

from hive.store.database import (
    AgentRow,
    IdAllocator,
    Queries,
    StoreError,
    connect,
    migrate,
)
from hive.store.reader import Reader

__all__ = ["AgentRow", "IdAllocator", "Queries", "Reader", "StoreError", "connect", "migrate"]
