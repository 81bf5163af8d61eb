"""The text analysis BM25 sees: its stems are stored in the index, so they must not drift."""

from __future__ import annotations

from milvus_memory_mcp.keywords import OWN_WEIGHT, analyse, words_with_context


def test_analysis_drops_stop_words_and_gives_snowball_english_stems() -> None:
    text = "She generously donated to the running club on weekends; happiness and connections, Alice's hobbies!"
    # Snowball English ("Porter2"); Porter's original stems "generously" to "gener".
    assert analyse(text) == "generous donat run club weekend happi connect alic hobbi"


def test_analysis_of_only_stop_words_and_punctuation_is_empty() -> None:
    assert analyse("What are they doing? ... and why!") == ""


def test_a_memorys_own_words_count_three_times_against_its_contexts_once() -> None:
    assert OWN_WEIGHT == 3
    with_context = words_with_context("sushi tonight", "What's for dinner?")
    assert with_context == "sushi tonight dinner sushi tonight sushi tonight"
    assert words_with_context("sushi tonight", None) == "sushi tonight"  # a memory stored alone: its words once
    assert words_with_context("", "What's for dinner?") == "dinner"
