"""Token counts with the local embedder's tokenizer (all-MiniLM-L6-v2 WordPiece, package data).

Loaded on first use with `tokenizers` alone (no model, ~30 ms), once per process. With an API
embedder it is the same tokenizer: a budget is an estimate of what the agent's model will count.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from typing import Any

_lock = threading.Lock()


@cache
def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    with resources.as_file(resources.files("milvus_memory_mcp.assets") / "all-MiniLM-L6-v2.tokenizer.json") as p:
        tokenizer = Tokenizer.from_file(str(p))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count(text: str) -> int:
    """Tokens in `text`, without the [CLS] / [SEP] markers. A stretch WordPiece cannot split (a word
    over 100 characters, such as a run of emoji, a base64 blob or a long URL, or characters out of
    its vocabulary) is one [UNK] to it, whatever its length, but many tokens to the agent's model:
    it counts one token per character, so that a budget holds whatever the text."""
    with _lock:
        tokenizer = _tokenizer()
    unknown = tokenizer.token_to_id("[UNK]")
    encoded = tokenizer.encode(text, add_special_tokens=False)
    pairs = zip(encoded.ids, encoded.offsets, strict=True)
    return sum(max(1, end - start) if i == unknown else 1 for i, (start, end) in pairs)
