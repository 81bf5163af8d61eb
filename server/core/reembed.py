"""`reembed`: move every memory to another embedder while the old collection keeps serving.

It runs as bounded steps in the process that owns the store (the CLI draws its progress bar
between them, and the owner serves other calls in between):
1. The first step records the target in SQLite (a new Milvus collection, `<collection>_<n>`, and
   the new model) and makes it beside the active one.
2. Each step takes up to `limit` live memories whose current state (hash, updated_at) the target
   does not hold, embeds them with the new embedder (cached in SQLite by (model, hash)), writes
   them to the target, flushes it and records them; ids deleted meanwhile leave the target too.
3. When nothing is left, under the write lock: the last changes are caught up, the target's ids
   are checked against the live ones, the old collection is flushed, the switch is recorded in
   one SQLite transaction, and this process swaps to the new collection (the search index rebuilt)
   and embedder; then the old collection is dropped.
A kill before the switch record leaves the old collection active and untouched (a re-run resumes
from the recorded rows); after it the new one is active: a server must then be started with the
new embedder, and a re-run (or this process) drops what is left of the old collection.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from milvus_memory_mcp.core.lifecycle import Lifecycle
from milvus_memory_mcp.core.writes import WriteProtocol
from milvus_memory_mcp.embedders import Embedder, Kind, make_embedder
from milvus_memory_mcp.errors import BackendError, InvalidInput
from milvus_memory_mcp.history import HistoryStore
from milvus_memory_mcp.records import MemoryRecord
from milvus_memory_mcp.settings import Settings
from milvus_memory_mcp.stores import Store

logger = logging.getLogger(__name__)

MAX_STEP = 10_000
CATCH_UP = 1000  # memories per round of the last step's catch-up (under the write lock)
TARGET_KEYS = ("target", "target_model", "target_dims")


class SwitchableEmbedder:
    """The service's embedder, which `reembed` replaces at its switch (every owner holds this one).

    `close` closes the embedder it was made with (the service's or its maker's); the ones `reembed`
    made are closed by `Reembedder.close`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._original = inner

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def start(self) -> None:
        self.inner.start()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self._original.close()

    async def embed(self, texts: list[str], kind: Kind = "document") -> list[list[float]]:
        return await self.inner.embed(texts, kind)


def check_step(embedder: object, dimensions: object, limit: object) -> tuple[str, int | None, int]:
    if not isinstance(embedder, str) or not embedder:
        raise InvalidInput("reembed needs the new embedder: 'local' or 'openai:<model>'.")
    if dimensions is not None and (not isinstance(dimensions, int) or not 1 <= dimensions <= 32768):
        raise InvalidInput(f"--embedding-dims must be from 1 to 32768, got {dimensions!r}.")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_STEP:
        raise InvalidInput(f"--batch must be from 1 to {MAX_STEP}, got {limit!r}.")
    return embedder, dimensions, limit


class Reembedder:
    def __init__(
        self,
        settings: Settings,
        history: HistoryStore,
        vectors: Store,
        embedder: SwitchableEmbedder,
        writes: WriteProtocol,
        lifecycle: Lifecycle,
    ) -> None:
        self._settings = settings
        self._history = history
        self._vectors = vectors
        self._embedder = embedder
        self._writes = writes
        self._lifecycle = lifecycle
        self._lock = anyio.Lock()  # one step at a time
        self._made: dict[tuple[str, int | None], Embedder] = {}
        self._target: tuple[str, Store] | None = None  # the target collection's name and store

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for made in self._made.values():
                await made.close()
            self._made.clear()

    async def step(self, spec: str, dims: int | None, limit: int) -> dict[str, Any]:
        """One bounded step; `switched` is true once the new collection and embedder serve."""
        async with self._lock:
            new = await self._embedder_for(spec, dims)
            await self._history.open()
            state = await self._history.store_state()
            if state.get("active_model") == new.model_id != self._embedder.model_id and not self._lifecycle.is_ready:
                # A run killed after its switch: this process serves with the new embedder too.
                logger.warning("the store was switched to %s by an earlier reembed; serving with it", new.model_id)
                self._embedder.inner = new
            await self._lifecycle.ready()
            if retired := state.get("retired"):
                await self._vectors.drop_collection(retired)
                await self._history.set_store_state({"retired": None})
            if (self._embedder.model_id, self._embedder.dimensions) == (new.model_id, new.dimensions):
                await self._abandon(state)
                _, live = await self._history.reembed_progress("")
                return self._result(live, live, True, state.get("active") or self._settings.collection, new)
            target, store = await self._target_for(state, new)
            todo = await self._history.reembed_todo(target, limit)
            gone = await self._history.reembed_gone(target, limit)
            if todo or gone:
                await self._copy(target, store, new, todo, gone)
                done, total = await self._history.reembed_progress(target)
                return self._result(done, total, False, target, new)
            async with self._writes.lock:
                total = await self._switch(state, target, store, new)
            return self._result(total, total, True, target, new)

    def _result(self, done: int, total: int, switched: bool, collection: str, new: Embedder) -> dict[str, Any]:
        return {
            "done": done,
            "total": total,
            "switched": switched,
            "collection": collection,
            "model": new.model_id,
            "dimensions": new.dimensions,
        }

    async def _embedder_for(self, spec: str, dims: int | None) -> Embedder:
        made = self._made.get((spec, dims))
        if made is None:
            made = make_embedder(self._settings.model_copy(update={"embedder": spec, "embedding_dims": dims}))
            await made.open()  # loads the model, or asks an API the dimension it does not know
            self._made[(spec, dims)] = made
        return made

    async def _abandon(self, state: dict[str, str]) -> None:
        """Drop a target recorded for another embedder than the one asked for now."""
        if target := state.get("target"):
            logger.warning("abandoning the unfinished reembed into %r (%s)", target, state.get("target_model"))
            # Recorded as retired first, so a kill before the drop leaves nothing unrecorded behind.
            await self._history.set_store_state(dict.fromkeys(TARGET_KEYS) | {"retired": target}, forget_target=target)
            self._target = None
            await self._vectors.drop_collection(target)
            await self._history.set_store_state({"retired": None})

    async def _target_for(self, state: dict[str, str], new: Embedder) -> tuple[str, Store]:
        """The target collection, recorded and made on the first step, resumed on the others."""
        target = state.get("target")
        if target and (state.get("target_model"), state.get("target_dims")) != (new.model_id, str(new.dimensions)):
            await self._abandon(state)
            target = None
        if not target:
            target = await self._free_name(state.get("active"))
            values: dict[str, str | None] = {"target": target, "target_model": new.model_id}
            await self._history.set_store_state(values | {"target_dims": str(new.dimensions)}, forget_target=target)
            logger.info("reembed: building %r with %s beside the active collection", target, new.model_id)
        if self._target is None or self._target[0] != target:
            self._target = (target, await self._vectors.sibling(target, new.model_id, new.dimensions))
        return self._target

    async def _free_name(self, active: str | None) -> str:
        """`<collection>_<n>`, n one more than the active one's, or more: a collection this store
        did not record is never touched (it may be another store's, on a shared Milvus server)."""
        base = self._settings.collection
        n = int(active[len(base) + 1 :]) + 1 if active and active != base else 1
        while await self._vectors.has_collection(f"{base}_{n}"):
            n += 1
        return f"{base}_{n}"

    async def _copy(self, target: str, store: Store, new: Embedder, todo: list[MemoryRecord], gone: list[str]) -> None:
        """Write `todo` (new vectors) to the target and remove `gone`; recorded once flushed."""
        vectors = await self._vectors_for(new, todo)
        await store.upsert(list(zip(todo, vectors, strict=True)))
        await store.delete(gone)
        await store.flush()
        store.take_durable()
        if refused := [r.id for r in todo if r.id in store.refused]:
            raise BackendError(
                f"Milvus refused the data of {len(refused)} memories (e.g. {refused[0]}): update or delete "
                "them, then run reembed again."
            )
        await self._history.record_reembedded(target, todo, gone)

    async def _vectors_for(self, new: Embedder, records: list[MemoryRecord]) -> list[list[float]]:
        """The new embedder's vectors of these texts: cached ones from SQLite, the rest computed and cached."""
        stored = await self._history.embeddings(new.model_id, new.dimensions, list({r.hash for r in records}))
        missing = {r.hash: r.memory for r in records if r.hash not in stored}
        if missing:
            computed = await new.embed(list(missing.values()))
            stored.update(zip(missing, computed, strict=True))
            rows = [(h, text, v) for (h, text), v in zip(missing.items(), computed, strict=True)]
            await self._history.save_embeddings(new.model_id, rows)
        return [stored[r.hash] for r in records]

    async def _switch(self, state: dict[str, str], target: str, store: Store, new: Embedder) -> int:
        """Catch up, verify, record the switch and serve the target; the caller holds the write lock."""
        while True:
            todo = await self._history.reembed_todo(target, CATCH_UP)
            gone = await self._history.reembed_gone(target, CATCH_UP)
            if not todo and not gone:
                break
            await self._copy(target, store, new, todo, gone)
        live, held = set(await self._history.live_ids()), set(await store.ids())
        if live != held:
            await store.delete(sorted(held - live))
            await store.flush()
            await self._history.record_reembedded(target, [], sorted(live - held))  # written again next run
            raise BackendError(
                f"The new collection {target!r} holds {len(held)} memories, not the {len(live)} live ones; "
                "nothing was switched: run reembed again."
            )
        await self._writes.flush_and_settle()  # the old collection's last writes, before it is retired
        old = state.get("active") or self._settings.collection
        await self._history.switch_collection(target, new.model_id, old, self._embedder.model_id)
        logger.info("reembed: switched to %r (%s, %d memories)", target, new.model_id, len(live))
        self._embedder.inner = new
        self._target = None
        try:
            self._vectors.use_collection(target)
            await self._vectors.open(new.model_id, new.dimensions)
        except BackendError:
            self._lifecycle.is_ready = False  # the next call opens the recorded collection again
            raise
        await self._vectors.drop_collection(old)
        await self._history.set_store_state({"retired": None})
        return len(live)
