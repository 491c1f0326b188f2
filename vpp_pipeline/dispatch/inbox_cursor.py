"""The inbox sensor's cursor: which store it read, and the last inbox id it requested a run for.

Text form ``<store_id>:<last_inbox_id>`` (a bare number is a cursor written before stores had ids). A
cursor is only meaningful for the store it was written for: inbox ids of another store (a store
replaced by a new one, or an emptied one whose ids restarted) would make ``inbox_id > last`` skip
acknowledged deliveries. So :func:`start_after` reads from the start of the store, with a reason to log,
when the store id differs or the store's highest inbox id is below the cursor (restored from an older
backup). Reading from the start is safe: only unprocessed rows are requested, and applying a row twice
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpp_pipeline.ops import OpsStore


@dataclass(frozen=True)
class InboxCursor:
    store_id: str | None
    last_inbox_id: int

    @classmethod
    def parse(cls, text: str | None) -> InboxCursor:
        if not text:
            return cls(None, 0)
        store_id, sep, last = text.rpartition(":")
        return cls(store_id if sep else None, int(last))

    def text(self) -> str:
        return f"{self.store_id}:{self.last_inbox_id}"


def start_after(cursor: InboxCursor, store: OpsStore) -> tuple[int, str | None]:
    """The inbox id after which to look for unprocessed rows, and why the cursor was not followed
    (None when it was)."""
    if cursor.store_id is not None and cursor.store_id != store.store_id:
        return 0, (
            f"OPS_STORE_CHANGED: the cursor is for store {cursor.store_id} (up to inbox id"
            f" {cursor.last_inbox_id}); {store.display} holds store {store.store_id}: reading its"
            " unprocessed rows from the start"
        )
    highest = store.max_inbox_id()
    if cursor.last_inbox_id > highest:
        return 0, (
            f"OPS_STORE_REWOUND: the cursor is at inbox id {cursor.last_inbox_id} but store"
            f" {store.store_id} ends at {highest} (restored from an older backup?): reading its"
            " unprocessed rows from the start"
        )
    return cursor.last_inbox_id, None
