"""The text analysis BM25 sees: its stems are stored in the index, so they must not drift."""

from __future__ import annotations

from milvus_memory_mcp.keywords import analyse


def test_analysis_drops_stop_words_and_gives_snowball_english_stems() -> None:
    text = "She generously donated to the running club on weekends; happiness and connections, Alice's hobbies!"
    # Snowball English ("Porter2"); Porter's original stems "generously" to "gener".
    assert analyse(text) == "generous donat run club weekend happi connect alic hobbi"


def test_analysis_of_only_stop_words_and_punctuation_is_empty() -> None:
    assert analyse("What are they doing? ... and why!") == ""
