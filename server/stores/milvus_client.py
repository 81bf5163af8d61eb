"""pymilvus plumbing for `MilvusStore`: deadlines on every call, error translation, the write lock."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from milvus_memory_mcp.errors import BackendError
from milvus_memory_mcp.history.reembed import UNKNOWN_SCOPE
from milvus_memory_mcp.stores.milvus_schema import drop_lite_indexes

logger = logging.getLogger(__name__)

QUERY_BATCH = 1000


class Deadline:
    """The pymilvus client with a deadline on every call.

    Without `timeout`, pymilvus retries a failing call up to 75 times with back-off (minutes); with
    it, its retries on transient errors (UNAVAILABLE, rate limits) stop when the deadline passes.
    """

    _NO_DEADLINE = frozenset({"prepare_index_params", "create_schema", "close", "get_server_type", "_get_connection"})
    # Collection set-up waits for the server (loading takes seconds on a server): a longer deadline.
    _ADMIN = frozenset({"create_collection", "create_index", "load_collection", "flush", "drop_collection"})
    ADMIN_TIMEOUT = 120.0

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self._NO_DEADLINE or not callable(attr):
            return attr
        deadline = max(self._timeout, self.ADMIN_TIMEOUT) if name in self._ADMIN else self._timeout

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", deadline)
            return attr(*args, **kwargs)

        return call


class WriteClock:
    """Read-your-writes on a Milvus server without Strong consistency's wait for the server's clock.

    After each write (and at open) `mark` takes a fresh timestamp from the server's oracle: later
    than every write that has returned. (A write's own timestamp will not do: Milvus 2.3.5 answers a
    delete with 0, which is why pymilvus's Session consistency still finds a memory just deleted.)
    The write protocol records `latest` in the history store, where every process reads it
    (`recorded`), for the collection and for each scope term of the memories the write changed
    ("user_id=alice"; "*" when it could not tell). A search then waits only until the server has
    applied the latest recorded write to its scope: the smallest timestamp over the scope terms its
    filter pins (a memory it can find carries all of them, so each was noted at that memory's write
    or later), a term never noted counting as the collection's; a search that pins none, or made
    while this process's own latest write is not recorded yet, waits for the collection's latest
    write (README, "Deploying beyond one machine"). Shared by a store and its siblings (one oracle).
    """

    def __init__(self, recorded: Callable[[Collection[str]], Awaitable[dict[str, int]]] | None) -> None:
        self.latest = 0
        self._recorded = recorded

    def mark(self, client: Any, timeout: float) -> None:
        """In the write's worker thread, once the write has returned."""
        self.latest = max(self.latest, int(client._get_connection().alloc_timestamp(timeout=timeout)))

    async def search_args(self, terms: Collection[str] = ()) -> dict[str, Any]:
        """The consistency a search of the scope `terms` pin asks for (class docstring)."""
        try:
            noted = await self._recorded(terms) if self._recorded else {}
        except BackendError as e:  # still read-your-writes: Strong waits for the server's clock
            logger.warning("searching with Strong consistency: the latest write's timestamp is unknown (%s)", e)
            return {"consistency_level": "Strong"}
        return {"consistency_level": "Customized", "guarantee_timestamp": max(self.wait_for(noted, terms), 1)}

    def wait_for(self, noted: dict[str, int], terms: Collection[str]) -> int:
        """The timestamp a search of `terms` waits for, from the recorded ones (key "": the collection's)."""
        collection = noted.get("", 0)
        if self.latest > collection or not terms:
            return max(self.latest, collection)
        return max(noted.get(UNKNOWN_SCOPE, 0), min(noted.get(t, collection) for t in terms))


def connection_problem(e: BaseException, uri: str, timeout: float) -> str | None:
    """A message naming the cause when `e` is a connection, credential or TLS problem, else None."""
    import grpc

    chain: list[BaseException] = []
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = " ".join(str(x) for x in chain)
    rpc = next((x for x in chain if isinstance(x, grpc.RpcError)), None)
    code = rpc.code() if rpc is not None and hasattr(rpc, "code") else None  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or "auth check fail" in text:
        return (
            f"Milvus refused the credentials ({rpc_details(rpc) or 'authentication failed'}). "
            "Set MEMORY_MILVUS_TOKEN to 'user:password' or an API key that this server accepts."
        )
    if re.search(r"database\b.{0,80}not found", text):
        return "the database named by MEMORY_MILVUS_DB_NAME does not exist on this server; create it or unset it."
    if re.search(r"tls|ssl|handshake|certificate", text, re.IGNORECASE):
        return (
            f"the TLS handshake failed ({rpc_details(rpc) or 'TLS error'}). Use https:// only for a server "
            "with TLS and http:// for one without; check the server's certificate."
        )
    if "resolving" in text or "Domain name not found" in text or "Name or service not known" in text:
        return f"the host in {uri} could not be resolved; check MEMORY_MILVUS_URI."
    if code == grpc.StatusCode.UNAVAILABLE or re.search(r"UNAVAILABLE|Fail connecting to server", text):
        return (
            f"Milvus at {uri} is unreachable ({rpc_details(rpc) or 'connection failed'}). Check that the server "
            "is running and MEMORY_MILVUS_URI; calls recover by themselves once it is back."
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or re.search(r"Retry timeout|DEADLINE_EXCEEDED", text):
        return f"Milvus at {uri} did not answer within {timeout:g} s (MEMORY_MILVUS_TIMEOUT); try again."
    return None


COLLECTION_NOT_FOUND = 100  # Milvus error code (a server's and Lite's)


def collection_gone(e: BaseException) -> bool:
    """`e` says the collection does not exist (dropped while this process used it)."""
    from pymilvus import MilvusException

    return isinstance(e, MilvusException) and e.code == COLLECTION_NOT_FOUND


def rpc_details(rpc: BaseException | None) -> str:
    details = getattr(rpc, "details", None)
    text = details() if callable(details) else ""
    return str(text or "").strip()[:200]


class ReadWriteLock:
    """`with lock:` is exclusive (writes, flushes); `with lock.shared():` admits many readers at once.
    A waiting writer holds back new readers, so a stream of searches cannot starve a flush."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def __enter__(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()


def refused_data(e: BaseException) -> bool:
    """True when pymilvus or the engine refused the rows themselves (their values do not fit the
    schema: pymilvus checks types, the engine a VARCHAR's length), as opposed to the engine failing:
    only such a failure is worth splitting the batch for."""
    from pymilvus.exceptions import DataNotMatchException, MilvusException, ParamError

    if isinstance(e, (DataNotMatchException, ParamError)):
        return True
    return isinstance(e, MilvusException) and _TOO_LONG_RE.search(str(e)) is not None


# Milvus Lite: "VARCHAR field 'text' value length 70000 exceeds max_length=65535"; a server: "...
# exceeds max length ...".
_TOO_LONG_RE = re.compile(r"exceeds max[_ ]length", re.IGNORECASE)


def short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


def upsert_each_good(client: Any, collection: str, data: list[dict[str, Any]]) -> dict[str, str]:
    """Upsert `data`; a batch the engine refuses as data is halved until each refused row is alone,
    and every other row is stored. Returns the refused rows' ids with the reason; other failures raise."""
    try:
        client.upsert(collection, data)
        return {}
    except Exception as e:
        if not refused_data(e):
            raise
        if len(data) == 1:
            return {data[0]["id"]: str(getattr(e, "message", "") or short(e))[:300]}
    middle = len(data) // 2
    return upsert_each_good(client, collection, data[:middle]) | upsert_each_good(client, collection, data[middle:])


def load_collection(client: Any, name: str, lite_dir: Path | None) -> None:
    """Load a collection; on Lite (`lite_dir`), one whose index files a kill left broken is loaded
    again from its data files (`drop_lite_indexes`)."""
    try:
        client.load_collection(name)
    except Exception as e:  # pymilvus raises MilvusException; only the Lite case below is handled
        if lite_dir is None or not drop_lite_indexes(lite_dir, name):
            raise
        logger.warning("Milvus Lite could not load %r (%s); rebuilt its indexes from the data", name, short(e))
        client.load_collection(name)


def all_ids(client: Any, collection: str) -> list[str]:
    """Every id in the collection, in pages."""
    out: list[str] = []
    it = client.query_iterator(collection, batch_size=QUERY_BATCH, filter="", output_fields=["id"])
    try:
        while batch := it.next():
            out.extend(r["id"] for r in batch)
    finally:
        it.close()
    return out
