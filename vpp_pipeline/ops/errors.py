"""Why an ops store cannot be used: one exception with a machine-readable reason code."""

from __future__ import annotations

#: The file (SQLite) does not exist, or its folder was removed.
OPS_STORE_MISSING = "OPS_STORE_MISSING"
#: The file exists but holds 0 bytes (truncated, or created by something else).
OPS_STORE_EMPTY = "OPS_STORE_EMPTY"
#: A database without the ops store's tables: never initialized (``vpp ops-init``).
OPS_STORE_NOT_INITIALIZED = "OPS_STORE_NOT_INITIALIZED"
#: Not an ops store (not a SQLite file, or ops tables without the store's identity).
OPS_STORE_UNREADABLE = "OPS_STORE_UNREADABLE"
#: The store at the location is not the one this process opened (or was told to expect).
OPS_STORE_REPLACED = "OPS_STORE_REPLACED"
#: The store's schema is newer than this code knows: upgrade the code, never downgrade the store.
OPS_STORE_TOO_NEW = "OPS_STORE_TOO_NEW"
#: The database server cannot be reached (PostgreSQL).
OPS_STORE_UNREACHABLE = "OPS_STORE_UNREACHABLE"
#: A write did not complete (read-only, disk full, locked past the timeout).
OPS_STORE_NOT_WRITABLE = "OPS_STORE_NOT_WRITABLE"
#: ``vpp ops-init`` found something at the location that it will not overwrite.
OPS_STORE_EXISTS = "OPS_STORE_EXISTS"
#: The location is neither a file path nor a ``postgresql://`` URL.
OPS_STORE_BAD_LOCATION = "OPS_STORE_BAD_LOCATION"


class OpsStoreError(RuntimeError):
    """The ops store cannot be used as it is; ``reason_code`` says why, ``detail`` what to do."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
