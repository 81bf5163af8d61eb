"""What a search looks for: the question's content words, not its form.

Agents ask short natural questions ("What are Alice's hobbies?") of short memories ("I am working
on improving my tennis skills."). With all-MiniLM-L6-v2 the question's form steered the result:
with or without the question mark, the seed's two memories for alice swapped places, and the
scope's own name ("Alice", in none of her memories, which are hers anyway) pulled towards any
memory with a name in it. So both searches get the same text: the query's words, lower-cased,
without punctuation, without stop words (question words, pronouns, auxiliaries: the Snowball
list of `server.keywords`) and without the names in the scope (its user_id, agent_id, run_id
and their parts), possessives included. The dense search also drops any possessor ("Alice's"
when the scope is user_id "a"): in a person's scope the memories are hers, and rarely name her;
the keyword search keeps it (a name that is in the texts, as in LoCoMo's "Caroline: ...", is
evidence there). A query with nothing left is searched as written.

Measured (bench/retrieval.py): the persona set's dense top-1 0.667 -> 0.694 on its tune half
(0.639 -> 0.833 on the test half), LoCoMo dev dense R@10 0.508 -> 0.520, 0.529 without
possessors (hybrid 0.670 and 0.668: the same within noise).

Content words alone lose what a question's function words carry ("who does she report to" is
"report"; "what does she do for a living" is "living"). So the dense query vector is a blend:
(1 - AS_ASKED_WEIGHT) x the content words' vector + AS_ASKED_WEIGHT x the vector of the words as
asked (`as_asked`: lower-cased, no punctuation, so punctuation and case still do not steer),
normalised; both texts are embedded in one call (the model's time for the query doubles: ~5 ms).
Chosen on the tune halves (LoCoMo conversations 0-2 and the persona set's tune half; 0.2, 0.3 and
0.5 tried), checked on the rest (bench/retrieval.py): persona top-1 +1 question of 36 on the tune
half and +2 on the test half in both modes (hybrid test 0.694 -> 0.750, dense 0.833 -> 0.889);
LoCoMo R@10 within 0.006 everywhere (hybrid dev 0.668 -> 0.664 and conversations 5-9 0.619 ->
0.615; dense 0.529 -> 0.535 and 0.446 -> 0.449).

A question asking when or how long ("When did she ...", "what time ...", "how long has she ...",
"how many years ...", `asks_when`) is answered by a memory that says when or for how long: the
ranking favours those (`ranking.favour_times`; measured there).
"""

from __future__ import annotations

import math
import re

from milvus_memory_mcp import ranking
from milvus_memory_mcp.embedders import Embedder
from milvus_memory_mcp.filters import And, pinned_scope
from milvus_memory_mcp.keywords import STOP_WORDS, analyse
from milvus_memory_mcp.ranking import Hits

_WORD_RE = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_POSSESSIVE_RE = re.compile(r"['’]s$")
# Informal spellings of stop words that questions use ("whats her job").
_INFORMAL = frozenset("whats hows wheres whos whens whys thats im ive id dont doesnt didnt isnt please pls".split())
AS_ASKED_WEIGHT = 0.3  # the share of the words as asked in the dense query vector
# A question asking when or how long: its answer is a memory that says so (`ranking.favour_times`).
_WHEN_RE = re.compile(
    r"^\W*(?:when|what\s+(?:time|date|day|year|month)|which\s+(?:day|date|year|month)|how\s+long"
    r"|how\s+many\s+(?:days|weeks|months|years))\b",
    re.IGNORECASE,
)


def scope_names(where: And) -> frozenset[str]:
    """The lower-cased words of the scope values the filter tree pins (field == value), each also
    with an "s" (a possessive typed without its apostrophe: "alices")."""
    names: set[str] = set()
    for _, value in pinned_scope(where):
        value = value.lower()
        names.add(value)
        names.update(w for w in re.split(r"[\W_]+", value) if len(w) > 1)
    return frozenset(names | {f"{n}s" for n in names})


def content_query(text: str, names: frozenset[str] = frozenset(), possessors: bool = True) -> str:
    """The query's content words, space-separated (without possessors unless `possessors`); `text`
    itself when none is left."""
    kept = []
    for raw in _WORD_RE.findall(text.lower()):
        if not possessors and _POSSESSIVE_RE.search(raw):
            continue
        word = _POSSESSIVE_RE.sub("", raw).replace("’", "'")
        if word in STOP_WORDS or word in _INFORMAL or word in names or word.replace("'", "") in _INFORMAL:
            continue
        kept.append(word)
    return " ".join(kept) or text


def query_words(query: str) -> frozenset[str]:
    """The analysed words (`keywords.analyse`) of a content query, as BM25 looks for them."""
    return frozenset(analyse(query).split())


def asks_when(text: str) -> bool:
    """Whether the query asks for a time or a duration ("When did she ...", "what time ...", "which
    day ...", "how long ...", "how many years ...")."""
    return _WHEN_RE.match(text) is not None


def favour_answer_type(text: str, hits: Hits) -> Hits:
    """The ranked hits, re-ranked for what the question asks for: when it asks when, memories
    that say when move up (`ranking.favour_times`)."""
    return ranking.favour_times(hits, ranking.TIME_WEIGHT) if asks_when(text) else hits


def as_asked(text: str) -> str:
    """The query's words as asked, space-separated: lower-cased, without punctuation (question words,
    pronouns and names kept); `text` itself when it has no word."""
    return " ".join(w.replace("’", "'") for w in _WORD_RE.findall(text.lower())) or text


async def dense_vectors(embedder: Embedder, texts: list[str], names: frozenset[str]) -> list[list[float]]:
    """The dense search's vector for each query: its content words' vector blended with its words as
    asked (module docstring), all texts embedded in one call."""
    pairs = [(content_query(t, names, possessors=False), as_asked(t)) for t in texts]
    unique = list(dict.fromkeys(x for pair in pairs for x in pair))
    vector_of = dict(zip(unique, await embedder.embed(unique, kind="query"), strict=True))
    out = []
    for content, asked in pairs:
        blend = [
            (1 - AS_ASKED_WEIGHT) * c + AS_ASKED_WEIGHT * a
            for c, a in zip(vector_of[content], vector_of[asked], strict=True)
        ]
        norm = math.sqrt(sum(x * x for x in blend)) or 1.0
        out.append([x / norm for x in blend])
    return out
