"""An in-memory search index over the live memories: cosine similarity and BM25, by scope.

Milvus Lite 3.2.2 (pure Python) walks every row of the collection in Python on each search and
computes BM25 statistics per segment, so its searches cost O(rows) interpreter time (about 30 ms
at 3k rows, 250 ms at 100k) and keyword recall moved with flush timing. On Lite the core searches
this index instead (built from SQLite at open, kept in step by the writes, see
`milvus_memory_mcp.stores.indexed`); Milvus Lite still stores every memory. A search can be confined to given
ids (those SQLite selects for a filter), besides its scope.

Dense: unit vectors in one float32 matrix; one matrix-vector product over the rows (or over the
scope's rows when the scope is a small share of the store), then a partial sort. Keyword: BM25
(Milvus's formula; k1 and b from `server.keywords`) over the words `server.keywords.analyse`
yields, with the document count, frequencies and average length of the whole collection, as a
Milvus server computes them (Lite 3.2.2 uses each segment's own: a TODO in its source).

Thread safety: one lock; writes are rare next to searches and a search holds it for milliseconds.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from milvus_memory_mcp.keywords import bm25_idf, bm25_tf
from milvus_memory_mcp.records import SCOPE_FIELDS, Scope

# Below this share of the rows, gathering the scope's vectors beats scanning them all.
GATHER_SHARE = 0.25
Hits = list[tuple[str, float]]
G = TypeVar("G", bound=np.generic)


@dataclass(frozen=True)
class Entry:
    """One live memory as the index sees it."""

    id: str
    scope: Scope
    vector: npt.NDArray[np.float32]
    words: str  # `keywords.analyse(memory)`


class SearchIndex:
    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._lock = threading.Lock()
        self._vectors = np.zeros((0, dimensions), dtype=np.float32)
        self._live = np.zeros(0, dtype=bool)
        self._scope_codes = np.zeros((0, len(SCOPE_FIELDS)), dtype=np.int32)
        self._codes: dict[str, int] = {"": 0}  # scope value -> code; "" is an absent field
        self._slots: dict[str, int] = {}  # memory id -> row
        self._ids: list[str | None] = []
        self._free: list[int] = []
        # word -> (rows, term frequencies): flat int32 arrays, a few bytes a posting
        self._postings: dict[str, tuple[array[int], array[int]]] = {}
        self._words: list[str] = []  # each row's analysed words
        self._lengths = np.zeros(0, dtype=np.float32)
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._slots)

    # writes

    def upsert(self, entries: Iterable[Entry]) -> None:
        latest = {e.id: e for e in entries}  # the last of repeated ids wins
        if not latest:
            return
        batch = list(latest.values())
        vectors = np.stack([e.vector for e in batch]).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        with self._lock:
            codes = [[self._code(getattr(e.scope, f) or "") for f in SCOPE_FIELDS] for e in batch]
            slots = []
            for e in batch:
                slot = self._slots.get(e.id)
                if slot is None:
                    slot = self._allocate()
                    self._slots[e.id] = slot
                    self._ids[slot] = e.id
                else:
                    self._forget_words(slot)
                slots.append(slot)
            rows = np.asarray(slots, dtype=np.int64)
            self._vectors[rows] = vectors
            self._scope_codes[rows] = np.asarray(codes, dtype=np.int32)
            self._live[rows] = True
            for slot, e in zip(slots, batch, strict=True):
                self._index_words(slot, e.words)

    @classmethod
    def build(cls, dimensions: int, entries: Iterable[Entry]) -> SearchIndex:
        """A new index of `entries`, as `upsert` would make it, built in bulk: the start-up rebuild
        from SQLite (100k memories: 1.2-1.9 s, against 1.8-2.1 s upserted one by one)."""
        index = cls(dimensions)
        batch = list({e.id: e for e in entries}.values())  # the last of repeated ids wins
        if not batch:
            return index
        n = len(batch)
        vectors = np.stack([e.vector for e in batch]).astype(np.float32, copy=False)
        if vectors.shape[1] != dimensions:
            raise ValueError(f"vectors of {vectors.shape[1]} dimensions for an index of {dimensions}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        index._vectors = vectors / np.where(norms > 0, norms, 1.0)
        index._live = np.ones(n, dtype=bool)
        index._scope_codes = np.zeros((n, len(SCOPE_FIELDS)), dtype=np.int32)
        for column, field in enumerate(SCOPE_FIELDS):
            values = [getattr(e.scope, field) or "" for e in batch]
            for value in dict.fromkeys(values):
                index._code(value)
            index._scope_codes[:, column] = np.fromiter(map(index._codes.__getitem__, values), np.int32, n)
        index._ids = [e.id for e in batch]
        index._slots = {e.id: slot for slot, e in enumerate(batch)}
        index._words = [e.words for e in batch]
        split = [w.split() for w in index._words]
        lengths = np.fromiter(map(len, split), dtype=np.int64, count=n)
        index._lengths = lengths.astype(np.float32)
        index._total_length = int(lengths.sum())
        # (word, row) pairs counted at once, grouped by word: the postings' flat form (as `state()`'s)
        every = list(chain.from_iterable(split))
        vocabulary = {word: k for k, word in enumerate(dict.fromkeys(every))}
        word_ids = np.fromiter(map(vocabulary.__getitem__, every), np.int64, len(every))
        pairs, tfs = np.unique(word_ids * n + np.repeat(np.arange(n, dtype=np.int64), lengths), return_counts=True)
        words_of = pairs // n
        offsets = np.searchsorted(words_of, np.arange(len(vocabulary) + 1))
        index._postings = _postings(list(vocabulary), offsets, (pairs % n).astype(np.int32), tfs.astype(np.int32))
        return index

    def delete(self, ids: Iterable[str]) -> None:
        with self._lock:
            for memory_id in ids:
                slot = self._slots.pop(memory_id, None)
                if slot is None:
                    continue
                self._forget_words(slot)
                self._live[slot] = False
                self._ids[slot] = None
                self._free.append(slot)

    def _allocate(self) -> int:
        if self._free:
            return self._free.pop()
        slot = len(self._ids)
        if slot == self._vectors.shape[0]:
            grown = max(1024, slot * 2)
            self._vectors = _grow(self._vectors, grown)
            self._live = _grow(self._live, grown)
            self._scope_codes = _grow(self._scope_codes, grown)
            self._lengths = _grow(self._lengths, grown)
        self._ids.append(None)
        self._words.append("")
        return slot

    def _code(self, value: str) -> int:
        return self._codes.setdefault(value, len(self._codes))

    def _index_words(self, slot: int, words: str) -> None:
        counts = Counter(words.split())
        self._words[slot] = words
        length = sum(counts.values())
        self._lengths[slot] = length
        self._total_length += length
        postings = self._postings
        for word, tf in counts.items():
            posting = postings.get(word)
            if posting is None:
                posting = postings[word] = (array("i"), array("i"))
            posting[0].append(slot)
            posting[1].append(tf)

    def _forget_words(self, slot: int) -> None:
        self._total_length -= int(self._lengths[slot])
        self._lengths[slot] = 0
        for word in set(self._words[slot].split()):
            rows, tfs = self._postings[word]
            at = rows.index(slot)
            rows[at], tfs[at] = rows[-1], tfs[-1]  # swap-remove: order within a posting does not matter
            rows.pop()
            tfs.pop()
            if not rows:
                del self._postings[word]
        self._words[slot] = ""

    # saving and loading (server/index_file.py)

    def state(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """The index as arrays (large, for .npy files) and plain values (small, for JSON)."""
        with self._lock:
            n = len(self._ids)
            words = sorted(self._postings)
            counts = [len(self._postings[w][0]) for w in words]
            offsets = np.zeros(len(words) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(counts, dtype=np.int64)
            rows = np.concatenate([np.frombuffer(self._postings[w][0], dtype=np.int32) for w in words] or [[]])
            tfs = np.concatenate([np.frombuffer(self._postings[w][1], dtype=np.int32) for w in words] or [[]])
            arrays: dict[str, npt.NDArray[Any]] = {
                "vectors": self._vectors[:n],
                "live": self._live[:n],
                "scope_codes": self._scope_codes[:n],
                "lengths": self._lengths[:n],
                "offsets": offsets,
                "rows": rows.astype(np.int32),
                "tfs": tfs.astype(np.int32),
            }
            values: dict[str, Any] = {
                "dimensions": self.dimensions,
                "codes": self._codes,
                "ids": ["" if i is None else i for i in self._ids],
                "free": self._free,
                "words": self._words,
                "posting_words": words,
                "total_length": self._total_length,
            }
            return arrays, values

    @classmethod
    def restore(cls, arrays: dict[str, npt.NDArray[Any]], values: dict[str, Any]) -> SearchIndex:
        """The index `state()` described (`vectors` may be a copy-on-write memory map)."""
        index = cls(int(values["dimensions"]))
        index._vectors = arrays["vectors"]
        index._live = np.array(arrays["live"], dtype=bool)
        index._scope_codes = np.array(arrays["scope_codes"], dtype=np.int32)
        index._lengths = np.array(arrays["lengths"], dtype=np.float32)
        index._codes = dict(values["codes"])
        ids: list[str] = list(values["ids"])
        index._ids = [i or None for i in ids]
        index._slots = {i: slot for slot, i in enumerate(ids) if i}
        index._free = [int(x) for x in values["free"]]
        index._words = list(values["words"])
        index._total_length = int(values["total_length"])
        index._postings = _postings(values["posting_words"], arrays["offsets"], arrays["rows"], arrays["tfs"])
        return index

    # reads

    def _in_scope(self, scope: Scope, among: Collection[str] | None) -> npt.NDArray[np.bool_] | None:
        """Rows of the scope's live memories (only those `among` these ids, when given); None when
        no memory has that scope."""
        mask = self._live[: len(self._ids)].copy()
        if among is not None:
            rows = [slot for i in among if (slot := self._slots.get(i)) is not None]
            allowed = np.zeros(mask.size, dtype=bool)
            allowed[rows] = True
            mask &= allowed
        for field, value in scope.items():
            column = SCOPE_FIELDS.index(field)
            code = self._codes.get(value)
            if code is None:
                return None
            mask &= self._scope_codes[: len(self._ids), column] == code
        return mask

    def search(self, vector: list[float], scope: Scope, limit: int, among: Collection[str] | None = None) -> Hits:
        """(id, cosine similarity) of the scope's closest memories (`among` these ids), best first."""
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm > 0:
            query = query / norm
        with self._lock:
            mask = self._in_scope(scope, among)
            if mask is None or not mask.any():
                return []
            rows = np.flatnonzero(mask)
            if rows.size < GATHER_SHARE * mask.size:
                scores = self._vectors[rows] @ query
            else:
                scores = (self._vectors[: mask.size] @ query)[rows]
            return self._top(rows, scores, limit)

    def search_words(self, words: str, scope: Scope, limit: int, among: Collection[str] | None = None) -> Hits:
        """(id, BM25 score > 0) of the scope's memories (`among` these ids) sharing a word with the
        query, best first."""
        terms = Counter(words.split())
        with self._lock:
            mask = self._in_scope(scope, among)
            documents = len(self._slots)
            if mask is None or not documents or not terms:
                return []
            average = self._total_length / documents or 1.0
            scores = np.zeros(mask.size, dtype=np.float64)
            for term, weight in terms.items():
                posting = self._postings.get(term)
                if posting is None:
                    continue
                # copies, so that no buffer export of the arrays outlives the lock (it would block appends)
                rows = np.frombuffer(posting[0], dtype=np.int32).astype(np.int64)
                tf = np.frombuffer(posting[1], dtype=np.int32).astype(np.float64)
                df = len(rows)
                scores[rows] += weight * bm25_idf(documents, df) * bm25_tf(tf, self._lengths[rows], average)
            rows = np.flatnonzero(mask & (scores > 0))
            return self._top(rows, scores[rows], limit)

    def _top(self, rows: npt.NDArray[np.int64], scores: npt.NDArray[np.floating], limit: int) -> Hits:
        if rows.size > limit:
            best = np.argpartition(-scores, limit - 1)[:limit]
            rows, scores = rows[best], scores[best]
        ids = self._ids
        hits = [(ids[int(r)] or "", float(s)) for r, s in zip(rows, scores, strict=True)]
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits


def _grow(array: npt.NDArray[G], rows: int) -> npt.NDArray[G]:
    out = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


def _postings(
    words: list[str], offsets: npt.NDArray[np.int64], rows: npt.NDArray[np.int32], tfs: npt.NDArray[np.int32]
) -> dict[str, tuple[array[int], array[int]]]:
    """The postings of a flat form: word k's rows and term frequencies at offsets[k]:offsets[k + 1]."""
    out: dict[str, tuple[array[int], array[int]]] = {}
    for k, word in enumerate(words):
        start, end = int(offsets[k]), int(offsets[k + 1])
        out[word] = (array("i", rows[start:end].tobytes()), array("i", tfs[start:end].tobytes()))
    return out
