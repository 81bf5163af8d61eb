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
"""

from __future__ import annotations

import re

from milvus_memory_mcp.filters import And, Cond, Node
from milvus_memory_mcp.keywords import STOP_WORDS

_WORD_RE = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_POSSESSIVE_RE = re.compile(r"['’]s$")
# Informal spellings of stop words that questions use ("whats her job").
_INFORMAL = frozenset("whats hows wheres whos whens whys thats im ive id dont doesnt didnt isnt please pls".split())


def scope_names(where: And) -> frozenset[str]:
    """The lower-cased words of the scope values the filter tree pins (field == value), each also
    with an "s" (a possessive typed without its apostrophe: "alices")."""
    names: set[str] = set()

    def walk(node: Node) -> None:
        if isinstance(node, And):
            for part in node.parts:
                walk(part)
        elif isinstance(node, Cond) and node.kind == "scope" and node.op == "eq" and isinstance(node.value, str):
            value = node.value.lower()
            names.add(value)
            names.update(w for w in re.split(r"[\W_]+", value) if len(w) > 1)

    walk(where)
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
