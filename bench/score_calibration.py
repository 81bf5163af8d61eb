"""Score calibration on LoCoMo: how search_memories' scores of relevant and irrelevant hits are spread.

    python -m bench.score_calibration PATH/locomo10-dev.json [--conversations N] [--facts] [--dump features.npz]

Ingests every turn as bench/retrieval.py does (with `--facts`, its observations one by one instead,
as `bench/retrieval.py --facts`), asks every scored question (limit 10), and labels
each returned hit relevant when it is one of the question's evidence turns. Prints the score
percentiles of relevant and irrelevant hits, the share of each above candidate thresholds, and
R@10, so the documented example threshold can be read off the table. `--dump` also saves each
query's candidates' raw features (best-candidate cosine, own cosine, normalised BM25, fused rank
score) for fitting a scale offline: query, cosine (a keyword-only candidate gets the lowest dense
candidate's), BM25 / best BM25, BM25, best cosine, found by the dense search, relevant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.retrieval import CATEGORIES, evidence_ids, ingest, ingest_facts  # noqa: E402
from milvus_memory_mcp import filters  # noqa: E402
from milvus_memory_mcp.records import Scope  # noqa: E402
from milvus_memory_mcp.service import MemoryService  # noqa: E402
from milvus_memory_mcp.settings import Settings  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    q = np.percentile(values, [10, 25, 50, 75, 90])
    return " ".join(f"{x:.3f}" for x in q)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--conversations", type=int, default=None)
    parser.add_argument("--facts", action="store_true", help="store LoCoMo's observations, not its turns")
    parser.add_argument("--dump", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    samples = json.loads(args.path.read_text())[: args.conversations]
    relevant: list[float] = []
    irrelevant: list[float] = []
    top_relevant: list[float] = []
    top_irrelevant: list[float] = []
    features: list[list[float]] = []
    r10 = n = 0.0
    with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
        settings = Settings.load(data_dir=Path(tmp), flush_delay=0.5)
        async with MemoryService(settings) as svc:
            await svc.ready()
            dia_of, _ = await (ingest_facts(svc, samples) if args.facts else ingest(svc, samples))
            for sample in samples:
                scope = Scope(user_id=sample["sample_id"])
                for qa in sample["qa"]:
                    gold = evidence_ids(qa.get("evidence", []))
                    if qa.get("category") not in CATEGORIES or not gold:
                        continue
                    result = await svc.search(qa["question"], scope, limit=10)
                    labels = [bool(dia_of.get(h.id, set()) & gold) for h in result.results]
                    for rank, (hit, good) in enumerate(zip(result.results, labels, strict=True)):
                        (relevant if good else irrelevant).append(hit.score)
                        if rank == 0:
                            (top_relevant if good else top_irrelevant).append(hit.score)
                    found = set().union(*(dia_of.get(h.id, set()) for h in result.results)) & gold
                    r10 += len(found) / len(gold)
                    n += 1
                    if args.dump:
                        await dump_features(svc, qa["question"], scope, dia_of, gold, int(n), features)
    print(f"{int(n)} questions, R@10 {r10 / n:.3f}")
    print("score percentiles (p10 p25 p50 p75 p90)")
    print(f"  relevant hits   ({len(relevant)}): {percentiles(relevant)}")
    print(f"  irrelevant hits ({len(irrelevant)}): {percentiles(irrelevant)}")
    print(f"  top-1 relevant ({len(top_relevant)}): {percentiles(top_relevant)}")
    print(f"  top-1 irrelevant ({len(top_irrelevant)}): {percentiles(top_irrelevant)}")
    print("| threshold | relevant kept | irrelevant kept | precision |")
    for t in THRESHOLDS:
        kept_r = sum(s >= t for s in relevant)
        kept_i = sum(s >= t for s in irrelevant)
        precision = kept_r / (kept_r + kept_i) if kept_r + kept_i else float("nan")
        print(f"| {t:.2f} | {kept_r / len(relevant):.2f} | {kept_i / len(irrelevant):.2f} | {precision:.2f} |")
    if args.dump:
        np.save(args.dump, np.array(features))


async def dump_features(
    svc: MemoryService, question: str, scope: Scope, dia_of: Any, gold: set[str], qi: int, out: list[list[float]]
) -> None:
    where = filters.within(scope, None)
    [vector] = await svc.embedder.embed([question], kind="query")
    dense = await svc.vectors.search(vector, where, 20)
    keyword = await svc.vectors.search_keywords(question, where, 20)
    cos = {r.id: s for r, s in dense}
    best_kw = max((s for _, s in keyword), default=0.0) or 1.0
    kw = {r.id: s / best_kw for r, s in keyword}
    raw_kw = {r.id: s for r, s in keyword}
    best_cos = max(cos.values(), default=0.0)
    floor = min(cos.values(), default=0.0)  # a keyword-only candidate's cosine is at most this
    for i in set(cos) | set(kw):
        good = bool(dia_of.get(i, set()) & gold)
        out.append([qi, cos.get(i, floor), kw.get(i, 0.0), raw_kw.get(i, 0.0), best_cos, float(i in cos), float(good)])


if __name__ == "__main__":
    anyio.run(main)
