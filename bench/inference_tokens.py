"""Prompt tokens per add_memory with inference, for a typical message (o200k_base, GPT-4.1's tokenizer).

    python bench/inference_tokens.py        (needs `pip install bpe-openai` for exact counts;
                                             falls back to characters / 4)

Counts what the server sends: system + user message of each of the two calls, and the JSON
reply a model would give. Chat framing adds ~3 tokens a message, the JSON schema of structured
output is sent too (counted separately: providers may or may not bill it as prompt).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from milvus_memory_mcp.inference.prompts import (  # noqa: E402
    DECIDE_SYSTEM,
    DECISIONS_SCHEMA,
    EXTRACT_SYSTEM,
    FACTS_SCHEMA,
    decide_input,
    extract_input,
)

try:
    import bpe_openai  # type: ignore[import-not-found]

    _enc = bpe_openai.get_encoding("o200k_base")

    def count(text: str) -> int:
        return len(_enc.encode(text))

    TOKENIZER = "o200k_base"
except ImportError:

    def count(text: str) -> int:
        return round(len(text) / 4)

    TOKENIZER = "chars/4 estimate"

MESSAGE = "Actually I quit tennis, I play squash now with my colleague Tom on Tuesday evenings."
FACTS = ["Quit tennis", "Plays squash with colleague Tom on Tuesday evenings"]
MEMORIES = [
    "Working on improving tennis skills",
    "Likes to play tennis on weekends",
    "Has a linear algebra midterm exam on 2025-11-20",
    "Colleague Tom works in the data team",
    "Prefers evening workouts",
]
DECISIONS = {
    "decisions": [
        {"fact": 0, "event": "DELETE", "id": "0", "text": None, "reason": "Quit tennis."},
        {"fact": 1, "event": "ADD", "id": None, "text": FACTS[1], "reason": "New sport."},
    ]
}


def main() -> None:
    rows = [
        ("1 extract: system", count(EXTRACT_SYSTEM)),
        ("1 extract: input", count(extract_input([("user", MESSAGE)], "2025-06-01"))),
        ("1 extract: reply", count(json.dumps({"facts": FACTS}))),
        ("2 decide: system", count(DECIDE_SYSTEM)),
        ("2 decide: input (5 memories)", count(decide_input(MEMORIES, FACTS))),
        ("2 decide: reply", count(json.dumps(DECISIONS))),
    ]
    print(f"tokenizer: {TOKENIZER}; message: {MESSAGE!r}")
    for name, n in rows:
        print(f"{name:32} {n:5}")
    prompt = sum(n for name, n in rows if "reply" not in name)
    reply = sum(n for name, n in rows if "reply" in name)
    print(f"{'total prompt / reply':32} {prompt:5} / {reply}")
    schemas = count(json.dumps(FACTS_SCHEMA)) + count(json.dumps(DECISIONS_SCHEMA))
    print(f"{'+ JSON schemas (structured output)':32} {schemas:5}")


if __name__ == "__main__":
    main()
