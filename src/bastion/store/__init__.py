"""bastion.store: SQLite storage for red-team runs, attempts and turns."""

from .db import (
    DEFAULT_DB,
    AttemptRecord,
    RunRecord,
    Store,
    StoreError,
    default_db_path,
    new_run_id,
)

__all__ = ["DEFAULT_DB", "AttemptRecord", "RunRecord", "Store", "StoreError", "default_db_path", "new_run_id"]
