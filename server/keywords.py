"""Text analysis for BM25 keyword search, applied alike to memories and queries.

Milvus's analysers lower-case and split but Milvus Lite's cannot stem ("weekends" missed
"weekend"), so the text is analysed here and Milvus indexes the result: words lower-cased, the
Snowball English stop words dropped, the rest reduced by the Snowball English stemmer. Measured
on LoCoMo (bench/retrieval.py), this lifted BM25 recall@10 from about 0.52 to 0.61.
Changing this analysis changes what stored memories match: bump `ANALYSIS` with it (a saved
search index of another analysis is rebuilt at start; a Milvus 2.5+ or Lite collection's stored
field is compared at start, core/keyword_check.py, and rewritten by `doctor --repair`).

A memory from a conversation is indexed with its context (the messages around it, so that a reply
is found by the question it answers), but its own words count `OWN_WEIGHT` times: without that, the
turn that says a thing and its neighbours, which hold the same words in their context, scored alike,
and the neighbours took places on the page. Chosen on the tune half (bench/retrieval.py, LoCoMo
conversations 0-2, all ten conversations in one collection, hybrid R@10): once (as before) / 2 / 3
/ 4 / 5 gave 0.796 / 0.795 / 0.800 / 0.802 / 0.793; 3 kept (the two best are within 0.002, the
smaller kept, as elsewhere); measured in README ("Conversation context").
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from milvus_memory_mcp.records import context_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from milvus_memory_mcp.records import MemoryRecord

_WORD_RE = re.compile(r"\w+", re.UNICODE)
T = TypeVar("T", float, "npt.NDArray[np.floating[Any]]")

# BM25's parameters, the same on every engine: the in-process index (Milvus Lite), the evidence
# computed over a server's dense candidates (before Milvus 2.5) and a Milvus 2.5+ collection's BM25
# index (set when it is created). Memories are short (a fact, a dialogue turn), so a memory's length
# says little about its relevance: a lower b than the usual 0.75 (Milvus's default) normalises
# less, and a lower k1 saturates a repeated word sooner. Chosen on the tune halves
# (bench/retrieval.py's LoCoMo conversations 0-2; k1 0.6-1.5 x b 0-0.75): LoCoMo hybrid R@10 0.671
# with k1 1.5 / b 0.75 -> 0.706; every k1 0.6-1.2 with b 0.2-0.4 gave 0.701-0.706. Checked on
# conversations 3-4 (0.650 -> 0.662) and 5-9 (0.616 -> 0.635); the persona set unchanged.
BM25_K1 = 0.9
BM25_B = 0.3
OWN_WEIGHT = 3  # how many times a memory's own words count against its context's (module docstring)
# The version of what BM25 sees of a memory (this module): 2 since own words count OWN_WEIGHT times.
ANALYSIS = 2

# The Snowball project's English stop-word list (snowballstem.org, BSD), with clitic fragments.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
    hers herself it its itself they them their theirs themselves what which who whom this that these
    those am is are was were be been being have has had having do does did doing would should could
    ought a an the and but if or because as until while of at by for with about against between into
    through during before after above below to from up down in out on off over under again further
    then once here there when where why how all any both each few more most other some such no nor
    not only own same so than too very s t m d ll ve re don can will just
    """.split()
)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    # PyStemmer: the Snowball project's C stemmers. Its English stems equal the pure-Python
    # snowballstemmer 3.1.1's used before (checked on 100,939 distinct words), so stored memories
    # need no re-analysis; it loads in ~2 ms instead of 20-90 ms (on the first search's path after
    # a start) and stems ~20x faster (every add, every index rebuild).
    import Stemmer

    return Stemmer.Stemmer("english")


def analyse(text: str) -> str:
    """The words BM25 sees, space-separated (may be empty)."""
    words = [w for w in _WORD_RE.findall(text.lower()) if w not in STOP_WORDS]
    return " ".join(_stemmer().stemWords(words))


def words_with_context(words: str, context: str | None) -> str:
    """A memory's words for BM25: its own (`words`, analysed), OWN_WEIGHT times when it has a context,
    and its context's (`records.CONTEXT_KEY`) once. The context comes second: BM25 does not see the
    order, but a memory too long for Milvus's keyword field (`milvus_schema.MAX_TEXT_BYTES`) is cut
    at the end, and there the cut takes the repeats of its own words before its context."""
    if not context:
        return words
    return " ".join(filter(None, [words, analyse(context), *[words] * (OWN_WEIGHT - 1)]))


def memory_words(record: MemoryRecord) -> str:
    """The words BM25 sees for a memory: its text's and its context's."""
    return words_with_context(analyse(record.memory), context_of(record.metadata))


def bm25_idf(documents: int, df: int) -> float:
    """BM25's inverse document frequency of a word in `df` of `documents` (Milvus's formula)."""
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


def bm25_tf(tf: T, length: T, average: float) -> T:
    """BM25's term-frequency part for a word said `tf` times in a text of `length` words (floats or
    numpy arrays of them), `average` the mean length."""
    return tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
