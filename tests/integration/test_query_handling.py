"""Query handling: a question's form (punctuation, question words, the scope's own name) does not
steer search_memories; on Milvus Lite and on a Milvus 2.3.5 server (no BM25: keyword evidence is
computed by the product over the dense candidates)."""

from __future__ import annotations

import pytest

from milvus_memory_mcp import ranking
from milvus_memory_mcp.core import query
from milvus_memory_mcp.core.query import as_asked, asks_when, content_query, scope_names
from milvus_memory_mcp.filters import And, Cond
from milvus_memory_mcp.records import CONTEXT_KEY, MemoryRecord, Scope
from milvus_memory_mcp.service import MemoryService

from ..conftest import ENGINES

pytestmark = [pytest.mark.anyio]

SEED = ["I am working on improving my tennis skills.", "I have a linear algebra midterm exam on November 20"]
PERSONA = [
    "Works as a pediatric nurse at Riverside Children's Hospital.",
    "Allergic to peanuts and shellfish.",
    "Prefers meetings after 10am; she is not a morning person.",
    "Tore her left ACL skiing in 2023; the knee still hurts on stairs.",
    "Has a golden retriever named Biscuit.",
    "Order number ZX-4471 was shipped to Lisbon",
    "Planning a trip to Kyoto in April.",  # shares "plan" with the workout question
] + SEED


# (user_id, question): the scope named after her, and not ("a": only the possessive tells)
QUESTIONS = [
    ("alice", "What are Alice's hobbies?"),
    ("alice", "What are Alice's hobbies"),
    ("alice", "what are alices hobbies"),
    ("a", "What are Alice's hobbies?"),
    ("a", "what are alice’s hobbies"),
]


@ENGINES
@pytest.mark.parametrize(("user", "question"), QUESTIONS)
async def test_seed_hobbies_rank_tennis_first_whatever_the_punctuation(
    service: MemoryService, user: str, question: str
) -> None:
    for text in SEED:
        await service.add(text, Scope(user_id=user), infer=False)
    hits = (await service.search(question, Scope(user_id=user))).results
    assert [h.memory for h in hits][0] == SEED[0]
    assert hits[0].score > hits[1].score


@ENGINES
async def test_short_natural_questions_find_the_memory_that_answers_them(service: MemoryService) -> None:
    scope = Scope(user_id="maya")
    for text in PERSONA:
        await service.add(text, scope, infer=False)
    expected = {
        "Any injuries to consider for a workout plan?": PERSONA[3],
        "Does she have any pets?": PERSONA[4],
        "Can I schedule a call with Maya at 8am?": PERSONA[2],
        "Any food allergies I should know about": PERSONA[1],
        "zx-4471": PERSONA[5],  # a rare token: keyword evidence, on the server computed by the product
    }
    for question, answer in expected.items():
        hits = (await service.search(question, scope, limit=3)).results
        assert hits[0].memory == answer, (question, [h.memory for h in hits])


WORK = [
    "Works as a pediatric nurse at Riverside Children's Hospital.",
    "Her manager is named Priya.",
    "Drinks decaf only; caffeine gives her migraines.",
    "Lactose intolerant.",
    "Works twelve-hour night shifts on Fridays and Saturdays.",
    "I am working on improving my tennis skills.",
    "Goes running three evenings a week.",
]
# Questions whose meaning is in their function words: their content words alone ("report", "job",
# "espresso") ranked tennis, the night shifts and the lactose memory first.
FUNCTION_WORDS = {
    "who does maya report to": WORK[1],
    "Who does she report to?": WORK[1],
    "whats maya's job": WORK[0],
    "Can she have an espresso?": WORK[2],
}


@ENGINES
async def test_questions_whose_meaning_is_in_their_function_words_find_their_answer(service: MemoryService) -> None:
    for text in WORK:
        await service.add(text, Scope(user_id="maya"), infer=False)
    for question, answer in FUNCTION_WORDS.items():
        hits = (await service.search(question, Scope(user_id="maya"), limit=3)).results
        assert hits[0].memory == answer, (question, [h.memory for h in hits])


async def test_without_the_words_as_asked_the_content_words_alone_miss_them(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "AS_ASKED_WEIGHT", 0.0)  # the test above can fail
    for text in WORK:
        await service.add(text, Scope(user_id="maya"), infer=False)
    for question, answer in FUNCTION_WORDS.items():
        hits = (await service.search(question, Scope(user_id="maya"), limit=3)).results
        assert hits[0].memory != answer, question


def test_the_words_as_asked_keep_question_words_and_drop_punctuation_and_case() -> None:
    assert as_asked("What are Alice's hobbies?") == "what are alice's hobbies"
    assert as_asked("what are alice’s hobbies") == as_asked("What are Alice's hobbies?")
    assert as_asked("Can I call her at 8am?!") == "can i call her at 8am"
    assert as_asked("?!") == "?!"  # no word: searched as written


def test_content_query_drops_form_and_the_scopes_own_names() -> None:
    names = scope_names(And((Cond("user_id", "eq", "alice_smith"), Cond("agent_id", "eq", "Planner"))))
    assert {"alice_smith", "alice", "smith", "planner", "alices"} <= names
    assert content_query("What are Alice's hobbies?", names) == "hobbies"
    assert content_query("what are alice’s hobbies", names) == content_query("What are Alice's hobbies?", names)
    assert content_query("Whats Smith's job", names) == "job"
    assert content_query("Can I call her at 8am?") == "call 8am"
    assert content_query("What are Bob's hobbies?") == "bob hobbies"
    assert content_query("What are Bob's hobbies?", possessors=False) == "hobbies"
    assert content_query("Who is she?") == "Who is she?"  # nothing left: searched as written


DATED = {
    "Went to the LGBTQ support group on Tuesday.": True,
    "Went to the LGBTQ support group with Melanie.": False,
    "Has a dentist appointment at 3pm.": True,
    "Has a dentist appointment with Dr. Lee.": False,
    "Moved to Portland in March.": True,
    "Moved to Portland with her partner.": False,
    "Has had her dog Biscuit for three years.": True,
    "Takes her dog Biscuit to the beach.": False,
}


def test_questions_asking_when_or_how_long_are_told_apart() -> None:
    for question in (
        "When did she go?",
        "  when is it",
        "What time is the call?",
        "which day works",
        "How long ago?",
        "How long has she had her dog?",
        "how many years passed between the two moves",
    ):
        assert asks_when(question), question
    for question in (
        "What does she do?",
        "Whenever she calls, who answers?",
        "Where is the time capsule?",
        "How many dogs does she have?",
        "How is she?",
    ):
        assert not asks_when(question), question


def test_memories_that_say_when_are_told_apart() -> None:
    for text in (
        "Anniversary with Sam is on June 2",
        "Prefers meetings after 10am",
        "Works night shifts on Fridays",
        "Goes running three evenings a week",
        "Went to the group yesterday",
        "I painted that lake sunrise last year",
        "Meeting on May 5",
        "at 7:30",
        "in 2022",
        "the 3rd of the month",
        "I've had them for 3 years!",  # a duration: the year it began is the year it was said, less three
        "Been playing it for a month now",
        "We've been together for about three years",
        "Saving hard over the past two weeks",
        "Friends for more than a decade",
    ):
        assert ranking.mentions_time(text), text
    for text in (
        "I may go there",
        "Her time zone is Pacific Time",
        "Plays in a marching band",
        "Has a good morning",
        "Has two dogs",
        "Cooked for a few friends",
        "Drives a ten-year-old car",
    ):
        assert not ranking.mentions_time(text), text


def test_a_memory_that_says_when_moves_up_for_a_question_asking_when() -> None:
    hits = [
        (_record("a", "Likes the support group a lot"), 0.8),
        (_record("b", "Went to the support group on Tuesday"), 0.76),
    ]
    favoured = ranking.favour_times(hits, 0.2)
    assert [r.id for r, _ in favoured] == ["b", "a"]
    assert [s for _, s in favoured] == pytest.approx([0.808, 0.8])
    assert ranking.favour_times(hits, 0.0) == hits
    assert all(s <= 1.0 for _, s in ranking.favour_times([(_record("c", "on Monday"), 1.0)], 0.2))


@pytest.mark.parametrize("as_of", [None, "2999-01-01T00:00:00Z"])
async def test_only_questions_asking_when_favour_memories_that_say_when(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch, as_of: str | None
) -> None:
    """Through the core, current and `as_of` searches alike: a dated memory's score moves 0.2 of the
    way to 1 for a question asking when or how long, an undated one's does not, and other questions
    are untouched."""
    for text in DATED:
        await service.add(text, Scope(user_id="c"), infer=False)

    async def scores(question: str) -> dict[str, float]:
        hits = (await service.search(question, Scope(user_id="c"), limit=len(DATED), as_of=as_of)).results
        return {h.memory: h.score for h in hits}

    for question in (
        "When did she go to the LGBTQ support group?",
        "What time is her dentist appointment?",
        "How long has she had her dog?",
    ):
        boosted = await scores(question)
        monkeypatch.setattr(ranking, "TIME_WEIGHT", 0.0)
        plain = await scores(question)
        monkeypatch.setattr(ranking, "TIME_WEIGHT", 0.2)
        assert boosted.keys() == plain.keys()
        for memory, score in plain.items():
            expected = score + 0.2 * (1 - score) if DATED[memory] else score
            assert boosted[memory] == pytest.approx(expected), (question, memory)
    other = "Who did she go to the LGBTQ support group with?"
    assert not asks_when(other)
    before = await scores(other)
    monkeypatch.setattr(ranking, "TIME_WEIGHT", 0.0)
    assert await scores(other) == before


def _record(memory_id: str, text: str) -> MemoryRecord:
    return MemoryRecord(memory_id, text, "", {}, "c", None, None, created_at=0, updated_at=0)


HOME = [
    "Grew up in Tucson, Arizona.",
    "Enrolled part-time in a statistics master's program at Portland State.",
    "Lives in Portland, Oregon, with her partner Sam.",
    "Works as a pediatric nurse at Riverside Children's Hospital.",
    "Plays bass guitar in a weekend cover band.",
]


@ENGINES
async def test_one_shared_word_of_a_dissimilar_memory_does_not_outrank_the_answer(
    service: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The question shares one word with these memories, the "State" of the master's program's
    "Portland State": its keyword evidence counts only as far as its cosine is above
    ranking.GATE_FLOOR (0.2) on the way to the best one's, and only as far as the fact covers the
    question (`ranking.fact_cover`: one word of three); each alone is enough here."""
    for text in HOME:
        await service.add(text, Scope(user_id="maya"), infer=False)
    question = "what state did maya spend her childhood in"

    async def first() -> str:
        return (await service.search(question, Scope(user_id="maya"), limit=3)).results[0].memory

    assert await first() == HOME[0]
    monkeypatch.setattr(ranking, "GATE_FLOOR", 0.1)  # the floor before: the cover holds
    assert await first() == HOME[0]
    monkeypatch.setattr(ranking, "GATE_FLOOR", 0.2)
    monkeypatch.setattr(ranking, "fact_cover", lambda keyword, words: 1.0)  # no cover: the gate holds
    assert await first() == HOME[0]
    monkeypatch.setattr(ranking, "GATE_FLOOR", 0.1)  # neither: the shared word wins
    assert await first() == HOME[1]


def test_a_memory_with_a_conversation_context_keeps_keyword_evidence_at_a_lower_cosine() -> None:
    """A reply matched by its context's words has a low cosine of its own: below GATE_FLOOR, above
    CONTEXT_GATE_FLOOR, its keyword evidence counts where a fact's stored alone does not."""
    best = _record("best", "Goes to the gym on Mondays")
    fact = _record("fact", "Three times a week; it keeps us on track.")
    reply = MemoryRecord(
        "reply",
        fact.memory,
        "",
        {CONTEXT_KEY: "How often do you work out?"},
        "c",
        None,
        None,
        created_at=0,
        updated_at=0,
    )
    cosine = (ranking.GATE_FLOOR + ranking.CONTEXT_GATE_FLOOR) / 2
    pool = [(best, 0.6), (fact, cosine), (reply, cosine)]
    fused = dict((r.id, s) for r, s in ranking.fuse(pool, [(fact, 5.0), (reply, 5.0)], 0.7, pool))
    assert fused["reply"] > fused["fact"]
    assert fused["fact"] == pytest.approx(0.0)  # the lowest cosine of the dense list, no keyword evidence
