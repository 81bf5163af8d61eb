"""Ranking for search_memories: fuse dense and keyword candidates, optionally favour recent memories.

Scores (higher is better):
- dense: cosine similarity of the query and memory embeddings, -1..1;
- keyword: BM25 divided by the best BM25 among the candidates, 0..1;
- hybrid: (1 - w) * dense' + w * keyword', each min-max normalised over its own candidates (the
  top max(limit, 20) of each search), w = MEMORY_KEYWORD_WEIGHT; 0..1. A candidate found by one
  search only gets 0 for the other part. Measured on the LoCoMo dev split (bench/retrieval.py's
  candidate lists): R@10 0.66 with w = 0.6 and 20 candidates, 0.65 with w = 0.5; reciprocal-rank
  fusion of the same kind of lists gave 0.56, and 100 candidates 0.59-0.64.
  Keyword evidence is gated by similarity (issue 19): a keyword candidate's part is multiplied by
  (cosine - GATE_FLOOR) / (best cosine - GATE_FLOOR), clamped to 0..1, its cosine read from the
  wider dense pool (the pool's lowest when it is not there). In a small scope BM25 cannot tell a
  generic shared word ("plan", "food", "call") from a telling one: without the gate, one such
  word lifted an unrelated memory over the answer. With the gate and w = 0.7 (the query's content
  words, see core/query.py): LoCoMo dev R@10 0.668 (0.665 before), the persona set's hybrid top-1
  0.472 -> 0.639 on its tune half, 0.500 -> 0.694 on its test half. Replayed on the candidate
  lists, w = 0.6 gave 0.657 and 0.639 (tune), no gate (w = 0.6) 0.664 and 0.500, a gate floor of 0 0.669
  and 0.556. A memory stored alone (a fact) has GATE_FLOOR 0.2; one with a conversation context
  (records.CONTEXT_KEY) keeps CONTEXT_GATE_FLOOR 0.1, because what its keywords match is often its
  context, not its own text, whose cosine is low by nature ("Three times a week; it keeps us on
  track." for "How often does John work out?"). Chosen on the tune halves (bench/retrieval.py's LoCoMo
  conversations 0-2, each session one conversation, and the persona set's tune half, facts added
  one by one): one floor for all of 0.1 / 0.15 / 0.2 / 0.25 / 0.3 gave persona top-1 0.667 / 0.667 /
  0.694 / 0.694 / 0.639 and LoCoMo R@10 0.763 / 0.768 / 0.766 / 0.754 / 0.740 (context before only;
  with the two after too, 0.1 -> 0.2: 0.780 -> 0.782), but on a Milvus 2.3.5 server, whose keyword
  candidates all carry their true cosine, 0.2 cost LoCoMo dev 0.738 -> 0.733 (README, "Conversation
  context").
  A fact's keyword part (a memory stored alone) is weighed by `fact_cover`: w x the largest share
  of the question's analysed content words that a fact among the keyword candidates holds. A fact
  is short and says one thing: when the best keyword match of a fact holds one word of the
  question's three ("Prefers texts over phone calls." for "Can I schedule a call with her at
  8am?"), that word is weak evidence, and without the cover it took the full weight w = 0.7 and
  outranked the fact the dense search put first ("Prefers meetings after 10am"). A memory with a
  conversation context keeps w: its words are the exchange's, and a question about a conversation
  matches a part of them by nature (the same cover for them: LoCoMo tune R@10 0.802 -> 0.788).
  No parameter; measured (bench/retrieval.py, README "Facts stored alone"): the persona set's tune
  half unchanged (0.694 / 0.889), its test half 0.806 -> 0.861 top-1; LoCoMo stored as facts
  (`--facts`) R@10 0.662 -> 0.660 on conversations 0-2, 0.641 -> 0.651 on 3-4, 0.666 -> 0.671 on
  5-9; LoCoMo's turns unchanged (they have a context).
  The sum is divided by the weight of the searches that found anything (a query no keyword of
  which is stored is ranked by the dense part alone, up to 1, not 1 - w; a fact's keyword part
  counts with its cover), so it is relative: the best candidate gets about 1. It is then
  multiplied by the *level*, how well the best candidate matches at all: (best cosine -
  LEVEL_FLOOR) / (LEVEL_FULL - LEVEL_FLOOR), clamped to 0..1. The order within a query comes from
  the fusion (unchanged by the level: R@10 as above), and a query that nothing matches (best
  cosine <= 0.05 with the local model) scores 0 throughout.
  Calibration (bench/score_calibration.py, LoCoMo dev split, 760 questions, top-10 hits, with the
  query handling, its blend with the words as asked, the gate, BM25 k1 0.9 / b 0.3, each session
  added as a conversation dated by its session and indexed with its own words three times,
  `favour_period`, durations and "how long"): relevant hits p10/p50/p90 0.26 / 0.62 / 1.00,
  irrelevant 0.12 / 0.28 / 0.62; EXAMPLE_THRESHOLD 0.3 keeps 86% of the relevant hits and 45% of
  the irrelevant ones (0.5: 64% and 16%). The
  seed's "What are Alice's hobbies?", searched as "hobbies" blended with "what are alice's
  hobbies" (core/query.py), finds "I am working on improving my tennis skills." at cosine 0.182
  (score 0.66; as written, 0.125, and 0.084 without the "?") while the exam memory of the same
  scope, at 0.104, is last of two and scores 0.
- a question that asks when or how long (core/query.py `asks_when`: "When did she ...?", "what
  time ...", "how long has she ...") is answered by a memory that says when: a memory mentioning
  a time (a date, a month, a weekday, a clock time, "yesterday", "last week", a year) or a
  duration ("I've had them for 3 years": the year asked is the year it was said minus three) gets
  s + TIME_WEIGHT * (1 - s), still 0..1. Chosen on the tune half (bench/retrieval.py, LoCoMo
  conversations 0-2, added to s: 0.05 / 0.1 / 0.2 gave R@10 0.709 / 0.714 / 0.716 against
  0.706); see README for the checks, and for durations and "how long".
- a question that names a period ("in May 2023", core/periods.py) is answered by what was said then:
  the memories created in the period, searched on their own, move PERIOD_WEIGHT of the way to 1
  (`favour_period`). Measured in README ("Questions that name a date").
- recency (MEMORY_RECENCY_WEIGHT r > 0): (1 - r) * score + r * 0.5 ** (age / half-life).
"""

from __future__ import annotations

import re
from itertools import pairwise

from milvus_memory_mcp.keywords import analyse
from milvus_memory_mcp.records import MemoryRecord, context_of

Hits = list[tuple[MemoryRecord, float]]
# The threshold the schema and the memory_guide prompt suggest (see "Search and scores" in README).
EXAMPLE_THRESHOLD = 0.3
LEVEL_FLOOR = 0.05  # best cosine at or below which nothing matches (local model: unrelated texts ~0)
LEVEL_FULL = 0.25  # best cosine from which the best candidate counts as a full match
GATE_FLOOR = 0.2  # cosine at or below which a memory stored alone gets no keyword evidence
CONTEXT_GATE_FLOOR = 0.1  # the same for a memory with a conversation context (records.CONTEXT_KEY)
US_PER_DAY = 86_400 * 1_000_000
TIME_WEIGHT = 0.2  # how far a memory that mentions a time moves towards 1 for a question asking when
PERIOD_WEIGHT = 0.2  # how far a memory from the period a question names moves towards 1

_MONTHS = "january february march april june july august september october november december"
_DAYS = "monday tuesday wednesday thursday friday saturday sunday weekend"
_RELATIVE = "yesterday today tomorrow tonight ago"
# words that say when by themselves (with their plurals: "on Fridays"), and habits ("three evenings a week")
_TIME_WORDS = frozenset(w + s for w in f"{_MONTHS} {_DAYS} {_RELATIVE}".split() for s in ("", "s")) | {
    "mornings",
    "evenings",
    "nights",
}
_PERIOD_LEADS = frozenset("last next this past every".split())  # "last week", "every summer"
_PERIODS = frozenset("week month year night morning evening summer winter spring fall autumn".split())
_NUMBER = (
    r"(?:an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|a\s+few|a\s+couple(?:\s+of)?|several|many|\d+)"
)
# a duration: "for 3 years", "for about a month", "over the past two weeks", "more than a decade"
_DURATION_RE = re.compile(
    rf"\b(?:for|about|around|over|nearly|almost|past|last|than)\s+(?:(?:about|around|over|nearly|almost|the\s+past"
    rf"|the\s+last)\s+)?{_NUMBER}\s+(?:(?:more|whole)\s+)?(?:day|week|month|year|decade)s?\b"
)
_WORD_RE = re.compile(r"\w+")
_DIGIT_RE = re.compile(r"\d")
_NUMBER_TIME_RE = re.compile(
    r"\bmay\s+\d{1,2}\b|\b\d{1,2}\s+may\b"  # the month, not the verb
    r"|\b(?:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?\s+\d{1,2}\b"
    r"|\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w)|\b\d{1,2}:\d{2}\b"
    r"|\b(?:19|20)\d{2}\b|\b\d{1,2}(?:st|nd|rd|th)\b",
)


def keyword_scores(hits: Hits) -> Hits:
    best = max((s for _, s in hits), default=0.0)
    return [(r, s / best if best > 0 else 0.0) for r, s in hits]


def min_max(hits: Hits) -> Hits:
    """Scores mapped to 0..1 across the list (all 1 when they are equal)."""
    if not hits:
        return []
    high = max(s for _, s in hits)
    low = min(s for _, s in hits)
    span = high - low
    return [(r, (s - low) / span if span > 0 else 1.0) for r, s in hits]


def fact_cover(keyword: Hits, query_words: frozenset[str]) -> float:
    """How much of the question the best keyword match stored alone holds: the largest share of
    `query_words` (analysed) among the words of the keyword candidates without a context; 1 when
    there is no such candidate or no word."""
    alone = [r for r, _ in keyword if context_of(r.metadata) is None]
    if not alone or not query_words:
        return 1.0
    return max(len(query_words.intersection(analyse(r.memory).split())) for r in alone) / len(query_words)


def fuse(
    dense: Hits,
    keyword: Hits,
    keyword_weight: float,
    pool: Hits | None = None,
    query_words: frozenset[str] = frozenset(),
) -> Hits:
    """Weighted sum of min-max normalised scores over the union of both candidate lists, best first;
    each keyword part gated by the candidate's cosine, read from `pool` (the wider dense list), and
    a fact's (a memory stored alone) weighed by `fact_cover` of the question's `query_words`."""
    records: dict[str, MemoryRecord] = {}
    scores: dict[str, float] = {}
    best = max((s for _, s in dense), default=0.0)
    cosines = {r.id: s for r, s in (pool or dense)}
    lowest = min(cosines.values(), default=0.0)
    fact_weight = keyword_weight * fact_cover(keyword, query_words)

    def weight(record: MemoryRecord) -> float:
        return fact_weight if context_of(record.metadata) is None else keyword_weight

    def gate(record: MemoryRecord) -> float:
        floor = GATE_FLOOR if context_of(record.metadata) is None else CONTEXT_GATE_FLOOR
        if best <= floor:
            return 1.0  # similarity tells nothing here: keywords alone decide
        return min(1.0, max(0.0, (cosines.get(record.id, lowest) - floor) / (best - floor)))

    for r, s in min_max(dense):
        records.setdefault(r.id, r)
        scores[r.id] = scores.get(r.id, 0.0) + (1 - keyword_weight) * s
    for r, s in min_max(keyword):
        records.setdefault(r.id, r)
        scores[r.id] = scores.get(r.id, 0.0) + weight(r) * s * gate(r)
    found = (1 - keyword_weight if dense else 0.0) + max((weight(r) for r, _ in keyword), default=0.0)
    level = min(1.0, max(0.0, (best - LEVEL_FLOOR) / (LEVEL_FULL - LEVEL_FLOOR))) / (found or 1.0)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(records[i], min(1.0, s * level)) for i, s in ranked]


def mentions_time(text: str) -> bool:
    """Whether the text says when or how long: a date, a month, a weekday, a clock time, a year,
    "yesterday", a duration ("for three years")."""
    lowered = text.lower()
    words = _WORD_RE.findall(lowered)
    if not _TIME_WORDS.isdisjoint(words):
        return True
    if any(a in _PERIOD_LEADS and b.removesuffix("s") in _PERIODS for a, b in pairwise(words)):
        return True
    if _DURATION_RE.search(lowered) is not None:
        return True
    return _DIGIT_RE.search(lowered) is not None and _NUMBER_TIME_RE.search(lowered) is not None


def favour_times(hits: Hits, weight: float) -> Hits:
    """Hits re-ranked for a question asking when: memories that mention a time move `weight` of
    the way to 1 (module docstring)."""
    if weight <= 0:
        return hits
    out = [(r, s + weight * (1 - s) if mentions_time(r.memory) else s) for r, s in hits]
    return sorted(out, key=lambda h: (-h[1], h[0].id))


def favour_period(hits: Hits, inside: Hits, weight: float) -> Hits:
    """`hits` with `inside` (the same search among the memories of the period the question names):
    each memory keeps its better score, and those of the period move `weight` of the way to 1 and
    come first among equals."""
    records = {r.id: r for r, _ in hits}
    scores = {r.id: s for r, s in hits}
    for r, s in inside:
        records.setdefault(r.id, r)
        scores[r.id] = max(scores.get(r.id, 0.0), s)
    period = {r.id for r, _ in inside}
    out = [(records[i], s + weight * (1 - s) if i in period else s) for i, s in scores.items()]
    return sorted(out, key=lambda h: (-h[1], h[0].id not in period, h[0].id))


def mean_of(rankings: list[Hits]) -> Hits:
    """One ranking from several searches' (a memory missing from one scores 0 there), best first."""
    records: dict[str, MemoryRecord] = {}
    totals: dict[str, float] = {}
    for hits in rankings:
        for r, s in hits:
            records.setdefault(r.id, r)
            totals[r.id] = totals.get(r.id, 0.0) + s
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(records[i], s / len(rankings)) for i, s in ranked]


def with_recency(hits: Hits, weight: float, half_life_days: float, now_us: int) -> Hits:
    """Blend each score with 0.5 ** (age / half-life), age measured from the last update."""
    if weight <= 0:
        return hits
    half_life = half_life_days * US_PER_DAY
    out = [(r, (1 - weight) * s + weight * 0.5 ** (max(0, now_us - r.updated_at) / half_life)) for r, s in hits]
    return sorted(out, key=lambda h: -h[1])
