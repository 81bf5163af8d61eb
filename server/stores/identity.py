"""Which memory store a Milvus collection belongs to, so that no store reads, writes or repairs another's.

A memory store is one history (a SQLite file, or one MEMORY_COLLECTION of a PostgreSQL database) and
the collections it feeds. Its id, random, is recorded in the history's `store_state` (`store_id`)
the first time it opens a collection, and stamped in the properties of every collection it makes
(its collection and `reembed`'s targets: `memory.store`, with `memory.made_for`, the
MEMORY_COLLECTION it was made for). Opening a collection compares them before anything is read or
written (`claim`):

- stamped with this store's id: this store's;
- stamped with another id, or stamped while this history records none: another store's (a store
  with the same MEMORY_COLLECTION in another data dir or database, or whose `reembed` made a
  collection named like this store's): refused;
- not stamped (an earlier release made it): adopted, the id recorded first, then stamped; but a
  collection holding rows is refused to a history without a live memory and without an id;
- absent: made, stamped with this store's id (recorded first).

On a shared history (PostgreSQL) the history also records where the vectors are (`store_location`).
A process on a Milvus Lite file is then refused when the history feeds a Milvus server, or another
Lite file, unless its collection is stamped with this store's id (a data dir moved): replicas need
one Milvus server (README, "Replicas behind a load balancer").
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from milvus_memory_mcp.errors import BackendError, ConfigurationError, MemoryServiceError, StoreUnavailable

if TYPE_CHECKING:
    from milvus_memory_mcp.history import HistoryStore

logger = logging.getLogger(__name__)

PROP_STORE = "memory.store"  # the id of the store the collection belongs to
PROP_MADE_FOR = "memory.made_for"  # that store's MEMORY_COLLECTION
STORE_KEY = "store_id"  # store_state keys
LOCATION_KEY = "store_location"
LITE = "the Milvus Lite file"
SERVER = "the Milvus server"


def location_of(uri: str, db_name: str | None, lite: bool) -> str:
    """Where the vectors are, as recorded and shown: a Lite file on this host, or a server's address
    (without credentials). No I/O."""
    if lite:
        return f"{LITE} {os.path.abspath(os.path.expanduser(uri))} on {socket.gethostname()}"
    parts = urlsplit(uri)
    address = uri
    if parts.scheme and parts.hostname:
        address = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return f"{SERVER} {address}" + (f", database {db_name!r}" if db_name else "")


def switched_message(model: str, *, changed: bool) -> str:
    """A replica's calls once another process's `reembed` switched the store to `model`."""
    nothing = "; nothing was changed" if changed else ""
    return (
        f"Another server process switched this memory store to the embedder {model!r} (reembed){nothing}. "
        f"Restart this server with MEMORY_EMBEDDER={model}."
    )


class StoreIdentity:
    """The binding between a history and the collections it feeds (module docstring). No I/O here."""

    def __init__(self, history: HistoryStore, base: str, location: str, *, shared: bool, history_name: str) -> None:
        """`base`: MEMORY_COLLECTION; `location`: `location_of` this process's vector store; `shared`:
        other processes may use the history (PostgreSQL); `history_name`: the history, for messages."""
        self._history = history
        self._base = base
        self._location = location
        self._lite = location.startswith(LITE)
        self._shared = shared
        self._history_name = history_name
        self.store_id: str | None = None  # known once a collection is claimed

    def stamp(self) -> dict[str, str]:
        """The properties a collection this store makes carries."""
        return {PROP_STORE: self.store_id, PROP_MADE_FOR: self._base} if self.store_id else {}

    def owned(self, properties: dict[str, str]) -> bool:
        """A collection with these properties may be dropped by this store (not another's)."""
        stamped = properties.get(PROP_STORE)
        return stamped is None or stamped == self.store_id

    async def readable_here(self) -> bool:
        """Whether searches may be served before the collection is opened (Milvus Lite behind the search
        index): False when a shared history records other vectors than this process's; `claim` decides."""
        if not (self._shared and self._lite):
            return True
        where = (await self._history.store_state()).get(LOCATION_KEY)
        return where is None or where == self._location

    async def claim(
        self, collection: str, properties: dict[str, str] | None, rows: Callable[[], Awaitable[int]]
    ) -> dict[str, str]:
        """Refuse `collection` (its properties; None: absent) if it is not this store's, before anything
        is read or written; record in the history what it lacks; return the properties to stamp on an
        existing collection that has none yet. `rows` counts the collection's rows."""
        state = await self._history.store_state()
        recorded, where = state.get(STORE_KEY), state.get(LOCATION_KEY)
        stamped = (properties or {}).get(PROP_STORE)
        if stamped is not None and stamped != recorded:
            raise self._another(collection, (properties or {}).get(PROP_MADE_FOR), recorded is None)
        if self._shared and self._lite and where not in (None, self._location):
            if where.startswith(SERVER) or stamped is None:  # a stamp of ours proves a moved data dir
                raise self._elsewhere(where)
        if properties is not None and stamped is None and recorded is None and await rows() > 0:
            if not await self._history.list_live(None, 1):
                raise self._unknown(collection)
        store_id = recorded or uuid.uuid4().hex
        updates: dict[str, str | None] = {}
        if recorded is None:
            updates[STORE_KEY] = store_id
        if self._shared and where != self._location:
            updates[LOCATION_KEY] = self._location
        if updates:
            await self._history.set_store_state(updates)
        if recorded is None:
            logger.info("memory store %s: collection %r and %s", store_id, collection, self._history_name)
        self.store_id = store_id
        return self.stamp() if properties is not None and stamped is None else {}

    async def gone(self, collection: str) -> MemoryServiceError:
        """What to say when `collection` has disappeared under a running store: another process's
        `reembed` switched to a new one (and dropped this one), or it was dropped outside."""
        try:
            state = await self._history.store_state()
        except BackendError as e:
            return e
        active, model = state.get("active") or self._base, state.get("active_model")
        if active != collection and collection != state.get("target") and model:
            return ConfigurationError(switched_message(model, changed=False))
        return StoreUnavailable(
            f"The Milvus collection {collection!r} no longer exists (dropped outside this server?). Restart "
            "this server: it makes the collection again, empty; then run `milvus-memory-mcp doctor --repair` "
            "to refill it from the history."
        )

    def _another(self, collection: str, made_for: str | None, unrecorded: bool) -> ConfigurationError:
        if made_for is not None and made_for != collection:
            store = f"the memory store of MEMORY_COLLECTION={made_for!r} (its `reembed` made it)"
        elif made_for == self._base:
            store = (
                "another memory store with the same MEMORY_COLLECTION and another history (another data dir, "
                "MEMORY_HISTORY_PATH or MEMORY_HISTORY_URL)"
            )
        else:
            store = "another memory store" + (f", of MEMORY_COLLECTION={made_for!r}," if made_for else "")
        restored = (
            " If it is this store's collection and the history was replaced (by a backup older than the "
            "collection, or another database), point the history setting back at the one that feeds it."
            if unrecorded
            else ""
        )
        return ConfigurationError(
            f"The Milvus collection {collection!r} belongs to {store} and not to {self._history_name}; nothing was "
            "read or written. Two memory stores cannot share a collection: set MEMORY_COLLECTION to a name no "
            "other store on this Milvus uses (a store's `reembed` also makes `<its collection>_1`, `_2`, ...)."
            + restored
        )

    def _elsewhere(self, where: str) -> ConfigurationError:
        return ConfigurationError(
            f"This process keeps its vectors in {self._location}, but {self._history_name}, which other "
            f"processes share, feeds {where}; nothing was read or written. Replicas on one history need one "
            "Milvus server: set MEMORY_MILVUS_URI (and MEMORY_MILVUS_TOKEN) to the same Milvus server on every "
            "replica."
            + (
                " (If this is the only server process and its Milvus Lite file was lost, see README, "
                '"History on PostgreSQL", to start it on a new one.)'
                if where.startswith(LITE)
                else ""
            )
        )

    def _unknown(self, collection: str) -> ConfigurationError:
        return ConfigurationError(
            f"The Milvus collection {collection!r} holds memories that {self._history_name} does not have (an "
            "earlier release made it, for another memory store or before this history was replaced); nothing "
            "was read or written. Set MEMORY_COLLECTION to a name no other store on this Milvus uses, or point "
            "the history setting at the history that feeds this collection."
        )
