"""Generated, varied memory-like sentences and their vectors from the real local embedder.

The vectors are cached under bench/.cache/ (gitignored) in chunks keyed by the embedder's model
id and the generator version, so each sentence is embedded once (100k take ~10 min on an idle
core). Run `python -m bench.corpus 100000` to build the cache ahead of the benchmarks.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from pathlib import Path

import anyio
import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
GENERATOR = 1

NAMES = "Alice Bob Chen Dana Emeka Farah Goran Hana Ivan Jun Kofi Lena Mateo Nadia Omar Priya Quinn Rosa".split()
FOODS = "sushi ramen tacos falafel pho lasagna curry dumplings paella bibimbap ceviche pierogi risotto".split()
HOBBIES = (
    "tennis chess climbing pottery sailing baking birdwatching salsa dancing running swimming "
    "knitting photography gardening woodworking surfing calligraphy archery fencing"
).split()
PLACES = (
    "Lisbon Kyoto Nairobi Oslo Lima Hanoi Montreal Tbilisi Porto Seoul Cape Town Reykjavik "
    "Marrakesh Valparaiso Krakow Melbourne Istanbul Havana Bergen Cusco"
).split()
TOOLS = "Python Rust Go Kotlin TypeScript Postgres Kafka Kubernetes Terraform Spark Django React Elixir".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
PETS = "cat dog parrot rabbit hamster tortoise ferret goldfish iguana".split()
ROLES = "data engineer nurse teacher architect chef pilot lawyer designer researcher accountant".split()
SUBJECTS = "linear algebra organic chemistry statistics Spanish Japanese music theory macroeconomics".split()
TEMPLATES = [
    "{n} prefers {f} over {f2} when eating out on {d}s.",
    "Is allergic to {f} and avoids restaurants in {p}.",
    "Plays {h} every {d} morning with a friend named {n}.",
    "Is planning a trip to {p} in {m} with {k} friends.",
    "Works as a {r} and mostly uses {t} at work.",
    "Has a {pet} called {n} that is {k} years old.",
    "Has a {s} exam on {m} {k2}.",
    "Wants to learn {h} before moving to {p}.",
    "Dislikes {t} and would rather write {t2} for side projects.",
    "Had {f} for dinner in {p} last {d} and loved it.",
    "Meets {n} for coffee every other {d} at {k2}:00.",
    "Is reading a book about {h} recommended by {n}.",
    "Keeps the budget for the {p} trip under {k}000 euros.",
    "Started taking {s} lessons in {m}.",
    "Asked to be reminded about the {t} migration on {d}.",
    "Grew up in {p} and moved away at {k2}.",
    "Prefers window seats and flights leaving before {k}am.",
    "Is training for a {h} tournament in {m}.",
    "Cooks {f} for the family on {d} evenings.",
    "Needs vegetarian options; {n} is vegan.",
    "Is a {r} who volunteers teaching {s} on {d}s.",
    "Likes jazz while coding in {t} late at night.",
    "Bought a new {h} kit in {p} for {k}00 dollars.",
    "Sleeps badly before {s} exams and drinks no coffee after {k}pm.",
]

QUALIFIERS = [
    "",
    "",
    "",
    " since {m}",
    " according to {n}",
    " as of {y}",
    " (mentioned on a {d})",
    ", or so {n} says",
    " for the last {k} years",
    " when the weather is good",
    " unless {n} visits",
    " after moving to {p}",
    " while working with {t}",
    " on weekends only",
    " ever since a trip to {p}",
    " until at least {m} {y}",
    ", which surprised {n}",
    " though less since {y}",
    " with help from {n}",
    " according to an email from {m}",
]


def sentences(count: int, seed: int = 7) -> list[str]:
    """`count` distinct varied sentences, the same for the same arguments."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        text = (rng.choice(TEMPLATES)[:-1] + rng.choice(QUALIFIERS) + ".").format(
            n=rng.choice(NAMES),
            f=rng.choice(FOODS),
            f2=rng.choice(FOODS),
            h=rng.choice(HOBBIES),
            p=rng.choice(PLACES),
            t=rng.choice(TOOLS),
            t2=rng.choice(TOOLS),
            d=rng.choice(DAYS),
            m=rng.choice(MONTHS),
            pet=rng.choice(PETS),
            r=rng.choice(ROLES),
            s=rng.choice(SUBJECTS),
            k=rng.randint(2, 9),
            k2=rng.randint(10, 28),
            y=rng.randint(2005, 2025),
        )
        if text in seen:
            continue  # small templates run out of combinations; the large ones never do
        seen.add(text)
        out.append(text)
    return out


CHUNK = 2048


def _key() -> str:
    from milvus_memory_mcp.embedders.local import LocalEmbedder

    return hashlib.sha256(f"{LocalEmbedder.model_id}|{GENERATOR}".encode()).hexdigest()[:12]


def _chunk_path(index: int) -> Path:
    return CACHE / f"vectors-{_key()}-{index * CHUNK}.npy"


async def _embed_chunks(texts: list[str], first: int, last: int, threads: int) -> None:
    from milvus_memory_mcp.embedders.local import LocalEmbedder

    embedder = LocalEmbedder(threads=threads)
    await embedder.open()
    t0 = time.perf_counter()
    for index in range(first, last):
        part = texts[index * CHUNK : (index + 1) * CHUNK]
        vectors = np.asarray(await embedder.embed(part), dtype=np.float32)
        np.save(_chunk_path(index), vectors)  # one file a chunk: an interrupted run resumes
        done = index * CHUNK + len(part)
        print(f"  embedded {done}/{len(texts)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def corpus(count: int, threads: int = 1, synthetic_after: int | None = None) -> tuple[list[str], np.ndarray]:
    """The first `count` sentences and their float32 vectors (count x 384), cached on disk.

    With `synthetic_after`, rows past the vectors already cached (but never before that row) get
    vectors mixed from two real ones plus noise instead of being embedded: same distribution
    for a latency benchmark (FLAT search cost does not depend on the values), minutes saved.
    """
    texts = sentences(count)
    CACHE.mkdir(exist_ok=True)
    chunks = -(-count // CHUNK)
    have = 0
    while have < chunks and _chunk_path(have).exists():
        have += 1
    need = chunks
    if synthetic_after is not None:
        need = max(have, -(-min(synthetic_after, count) // CHUNK))
    if have < need:
        print(
            f"embedding sentences {have * CHUNK}-{need * CHUNK} with the local model (cached in {CACHE})",
            file=sys.stderr,
        )
        anyio.run(_embed_chunks, texts, have, need, threads)
    real = np.concatenate([np.load(_chunk_path(i)) for i in range(need)])[:count]
    if len(real) == count:
        return texts, real
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, len(real), size=(2, count - len(real)))
    mixed = real[a] + 0.5 * real[b] + rng.normal(0, 0.02, size=(count - len(real), real.shape[1])).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    print(f"  {len(real)} real vectors, {len(mixed)} synthetic", file=sys.stderr)
    return texts, np.concatenate([real, mixed.astype(np.float32)])


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    texts, vecs = corpus(n, threads)
    print(f"{len(texts)} sentences, vectors {vecs.shape}, {len(set(texts))} distinct")
