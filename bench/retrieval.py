"""Retrieval quality: LoCoMo evidence recall@k and the persona set's top-1 / top-3 of search_memories.

    python bench/retrieval.py [PATH/locomo10.json | PATH/locomo10.zip] [--mode all|hybrid|dense|keyword]
                              [--conversations N] [--first N] [--persona] [--facts]

Persona sets (`--persona`): bench/persona.json, 36 short facts about one person stored in her scope,
72 natural questions an assistant would ask (paraphrases sharing no stemmed word with their answer,
with and without punctuation, some naming her), split in a "tune" and a "test" half; top-1 / top-3
= share of questions with an accepted answer first / among the first three. bench/persona_check.json,
another person and 72 questions written the same way by someone who had not seen the ranking (the
"check" set): never tuned on, and `--verbose` lists no miss of it (nor of the test half), so that it
stays unseen.

Every dialogue turn is stored through the product's own core (`MemoryService`: real Milvus Lite in a
temporary directory, the configured embedder, LLM inference off) as one memory "Speaker: text",
dated by its session (the add's `at`: said then, as a live conversation's memories are dated when
they are stored; `--undated`: stored now, as measured before 2026-11-29, so a question that names a
date finds nothing by it) and one scope (user_id) per conversation: each session is
one add_memory of its turns as a list of messages, so each turn keeps the messages around it as its
context (`--turn-by-turn`: one add per turn, no context, as measured before 2026-11-29). Every
question except category 5 (adversarial) is then asked through `MemoryService.search`, the call
behind the search_memories tool, with limit 10, in each requested mode (MEMORY_SEARCH_MODE).

`--facts` (a locomo10.json: the zip has no observations) stores LoCoMo's observations instead of
the turns: the facts its authors drew from each session per speaker ("Caroline attended an LGBTQ
support group recently ...", with the dia_ids they came from), each one add of its text alone,
dated by its session, as an agent stores what it learned; a fact counts for the turns it came from.

Evidence recall@k = share of a question's evidence turns among the top k results; hit@10 = share
of questions with at least one evidence turn in the top 10. Settings come from MEMORY_* variables
(e.g. MEMORY_EMBEDDER) as for the server; the data directory is always a fresh temporary one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from milvus_memory_mcp.records import Scope  # noqa: E402
from milvus_memory_mcp.service import MemoryService  # noqa: E402
from milvus_memory_mcp.settings import Settings  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
MODES = ("hybrid", "dense", "keyword")
K = 10
MESSAGES = 100  # the most messages one add_memory takes (MEMORY_MAX_MESSAGES' default)


def evidence_ids(raw: list[str]) -> set[str]:
    """Normalise LoCoMo's evidence ids: split on ';', drop stray colons and leading zeros ("D:11:26")."""
    out: set[str] = set()
    for item in raw:
        for part in item.split(";"):
            m = re.fullmatch(r"D:?(\d+):+(\d+)", part.strip())
            if m:
                out.add(f"D{int(m.group(1))}:{int(m.group(2))}")
    return out


def sessions(sample: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(session date, [(dia_id, "Speaker: text"), ...]) for every session of a conversation, in order."""
    conv = sample["conversation"]
    out = []
    n = 1
    while f"session_{n}" in conv:
        said = [(turn["dia_id"], f"{turn['speaker']}: {turn['text']}") for turn in conv[f"session_{n}"]]
        out.append((conv.get(f"session_{n}_date_time", ""), said))
        n += 1
    return out


def session_time(date: str) -> str:
    """A LoCoMo session's date ("1:56 pm on 8 May, 2023") as ISO-8601, read as UTC."""
    return datetime.strptime(date, "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc).isoformat()


def load_samples(path: Path) -> list[dict[str, Any]]:
    """LoCoMo conversations from a locomo10.json, or from the LoCoMo repository's data/locomo10.zip
    (one file per conversation, `data/multimodal_dialog/locomo10_v2/<n>.json`, each its
    conversation plus `qa`), ordered by number as in locomo10.json (conv-26 ... conv-50)."""
    if path.suffix != ".zip":
        return json.loads(path.read_text())
    import zipfile

    samples = []
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if re.search(r"/(\d+)\.json$", n)]
        for name in sorted(names, key=lambda n: int(Path(n).stem)):
            data = json.loads(z.read(name))
            kept = ("speaker_a", "speaker_b")
            conversation = {k: v for k, v in data.items() if k in kept or k.startswith("session_")}
            samples.append({"sample_id": f"conv-{Path(name).stem}", "conversation": conversation, "qa": data["qa"]})
    return samples


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def ingest(
    svc: MemoryService, samples: list[dict[str, Any]], turn_by_turn: bool = False, dated: bool = True
) -> tuple[dict[str, set[str]], list[float]]:
    """Store every turn: each session as one conversation (one add of its messages, so each turn
    keeps the messages around it as its context), or with `turn_by_turn` one add per turn; with
    `dated` each turn is dated by its session (the add's `at`), else stored now. Returns memory id
    -> dia_ids (a repeated text maps to the first memory) and the time per stored turn."""
    dia_of: dict[str, set[str]] = defaultdict(set)
    latencies = []
    for sample in samples:
        scope = Scope(user_id=sample["sample_id"])
        for date, said in sessions(sample):
            calls = (
                [said[i : i + 1] for i in range(len(said))]
                if turn_by_turn
                else [said[i : i + MESSAGES] for i in range(0, len(said), MESSAGES)]
            )
            for call in calls:
                messages = [{"role": "user", "content": text} for _, text in call]
                start = time.perf_counter()
                at = session_time(date) if dated else None
                out = await svc.add(messages, scope, {"session_date": date}, infer=False, at=at)
                latencies.extend([(time.perf_counter() - start) / len(call)] * len(call))
                for (dia_id, _), event in zip(call, out.results, strict=True):
                    dia_of[event.id].add(dia_id)
    await svc.vectors.flush()
    return dia_of, latencies


def observations(sample: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    """(session date, fact, dia_ids) for every observation of a conversation (LoCoMo's
    `observation`: per session and speaker, [fact, dia_id or [dia_ids]]), in order."""
    conv, obs = sample["conversation"], sample.get("observation", {})
    out = []
    n = 1
    while f"session_{n}" in conv:
        for facts in obs.get(f"session_{n}_observation", {}).values():
            for text, evidence in facts:
                ids = evidence_ids([evidence] if isinstance(evidence, str) else evidence)
                out.append((conv.get(f"session_{n}_date_time", ""), text, ids))
        n += 1
    return out


async def ingest_facts(
    svc: MemoryService, samples: list[dict[str, Any]], dated: bool = True
) -> tuple[dict[str, set[str]], list[float]]:
    """Store every observation as a fact on its own (one add of its text, no context), dated by its
    session with `dated`. Returns memory id -> the dia_ids it was drawn from, and the time per fact."""
    dia_of: dict[str, set[str]] = defaultdict(set)
    latencies = []
    for sample in samples:
        scope = Scope(user_id=sample["sample_id"])
        for date, text, ids in observations(sample):
            start = time.perf_counter()
            out = await svc.add(
                text, scope, {"session_date": date}, infer=False, at=session_time(date) if dated else None
            )
            latencies.append(time.perf_counter() - start)
            for event in out.results:
                dia_of[event.id] |= ids
    await svc.vectors.flush()
    return dia_of, latencies


async def evaluate(
    svc: MemoryService, samples: list[dict[str, Any]], dia_of: dict[str, set[str]]
) -> tuple[dict[str, dict[str, float]], list[float]]:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latencies = []
    for sample in samples:
        scope = Scope(user_id=sample["sample_id"])
        for qa in sample["qa"]:
            category = qa.get("category")
            gold = evidence_ids(qa.get("evidence", []))
            if category == 5 or category not in CATEGORIES or not gold:
                continue
            start = time.perf_counter()
            result = await svc.search(qa["question"], scope, limit=K)
            latencies.append(time.perf_counter() - start)
            ranked = [dia_of.get(hit.id, set()) for hit in result.results]
            found5 = set().union(*ranked[:5]) & gold
            found10 = set().union(*ranked[:K]) & gold
            for name in (CATEGORIES[category], "overall"):
                row = sums[name]
                row["n"] += 1
                row["r5"] += len(found5) / len(gold)
                row["r10"] += len(found10) / len(gold)
                row["hit10"] += 1.0 if found10 else 0.0
    table = {
        name: {m: row[m] / row["n"] for m in ("r5", "r10", "hit10")} | {"n": row["n"]} for name, row in sums.items()
    }
    return table, latencies


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1000:.1f} ms, p95 {pct(values, 0.95) * 1000:.1f} ms"


PERSONA = Path(__file__).resolve().parent / "persona.json"
PERSONA_CHECK = Path(__file__).resolve().parent / "persona_check.json"
SPLITS = ("tune", "test", "check", "all")
SHOWN = ("tune",)  # the split whose misses --verbose lists: the others stay unseen


async def personas(svc: MemoryService) -> dict[str, dict[str, dict[str, float]]]:
    """Top-1 / top-3 accuracy per split of both persona sets."""
    return {path.stem: await persona(svc, path) for path in (PERSONA, PERSONA_CHECK)}


async def persona(svc: MemoryService, path: Path) -> dict[str, dict[str, float]]:
    """Top-1 / top-3 accuracy per split of one persona set."""
    data = json.loads(path.read_text())
    scope = Scope(user_id=data["user_id"])
    fact_of: dict[str, str] = {}
    for key, text in data["facts"].items():
        out = await svc.add(text, scope, None, infer=False)
        fact_of[out.results[0].id] = key
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    misses = []
    for q in data["questions"]:
        result = await svc.search(q["question"], scope, limit=3)
        ranked = [fact_of.get(hit.id) for hit in result.results]
        for name in (q["split"], "all"):
            row = sums[name]
            row["n"] += 1
            row["top1"] += 1.0 if ranked[:1] and ranked[0] in q["answers"] else 0.0
            row["top3"] += 1.0 if set(ranked[:3]) & set(q["answers"]) else 0.0
        if q["split"] in SHOWN and (not ranked or ranked[0] not in q["answers"]):
            misses.append(f"  [{q['split']}] {q['question']!r}: {ranked} (want {q['answers']})")
    table = {name: {m: row[m] / row["n"] for m in ("top1", "top3")} | {"n": row["n"]} for name, row in sums.items()}
    for name in (n for n in SPLITS if n in table and not (n == "all" and len(table) == 2)):
        r = table[name]
        print(f"persona {name:<5}: n {int(r['n'])}, top-1 {r['top1']:.3f}, top-3 {r['top3']:.3f}")
    if VERBOSE and misses:
        print("\n".join([f"top-1 misses ({', '.join(SHOWN)}):", *misses]))
    return table


VERBOSE = False


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "path", type=Path, nargs="?", help="locomo10.json, or the LoCoMo repository's data/locomo10.zip"
    )
    parser.add_argument("--mode", choices=("all", *MODES), default="all", help="search mode(s) to measure")
    parser.add_argument("--conversations", type=int, default=None, help="use only the first N conversations")
    parser.add_argument("--first", type=int, default=0, help="skip the first N conversations")
    parser.add_argument(
        "--persona", action="store_true", help="also run the persona sets (persona.json, persona_check.json)"
    )
    parser.add_argument("--verbose", action="store_true", help="list the persona set's top-1 misses on its tune half")
    parser.add_argument(
        "--milvus-server", action="store_true", help="store in a Milvus 2.3.5 standalone (no BM25) instead of Lite"
    )
    parser.add_argument(
        "--turn-by-turn", action="store_true", help="one add_memory per turn (no context) instead of per session"
    )
    parser.add_argument(
        "--undated", action="store_true", help="store every turn now, not dated by its session (the add's `at`)"
    )
    parser.add_argument(
        "--facts",
        action="store_true",
        help="store LoCoMo's observations (facts drawn from the turns) one by one instead of the turns",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    global VERBOSE
    VERBOSE = args.verbose
    if args.path is None and not args.persona:
        parser.error("give a LoCoMo file, --persona, or both")
    samples = load_samples(args.path) if args.path else []
    end = args.first + args.conversations if args.conversations is not None else None
    samples = samples[args.first : end]
    if args.facts and not any(sample.get("observation") for sample in samples):
        parser.error("--facts needs LoCoMo's observations: a locomo10.json (the zip has none)")
    modes = MODES if args.mode == "all" else (args.mode,)
    report: dict[str, Any] = {"conversations": len(samples), "modes": {}}
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp, contextlib.ExitStack() as stack:
        extra: dict[str, Any] = {}
        if args.milvus_server:
            from tests.support.milvus_server import MilvusStandalone

            server = MilvusStandalone(Path(tmp) / "server")
            await anyio.to_thread.run_sync(server.start)
            stack.callback(server.stop)
            extra = {"milvus_uri": server.uri, "milvus_token": server.token}
        settings = Settings.load(data_dir=Path(tmp) / "data", flush_delay=0.5, **extra)
        async with MemoryService(settings) as svc:
            await svc.ready()
            if args.persona:
                for mode in modes:
                    svc.settings = settings.model_copy(update={"search_mode": mode})
                    print(f"{mode}:")
                    report.setdefault("persona", {})[mode] = await personas(svc)
                svc.settings = settings
            if not samples:
                if args.json:
                    args.json.write_text(json.dumps(report, indent=2))
                return
            if args.facts:
                dia_of, ingest_lat = await ingest_facts(svc, samples, not args.undated)
            else:
                dia_of, ingest_lat = await ingest(svc, samples, args.turn_by_turn, not args.undated)
            report["memories"] = len(dia_of)
            report["added"] = (
                "one observation per add_memory"
                if args.facts
                else "one turn per add_memory"
                if args.turn_by_turn
                else "one session per add_memory"
            )
            report["dated"] = "now" if args.undated else "by session (add's at)"
            report["embedder"] = svc.embedder.model_id
            report["engine"] = "Milvus 2.3.5 server" if args.milvus_server else "Milvus Lite"
            print(
                f"ingested {len(dia_of)} memories from {len(samples)} conversations ({svc.embedder.model_id}); "
                f"{report['added']}, per turn {ms(ingest_lat)}"
            )
            report["ingest_ms"] = {"p50": pct(ingest_lat, 0.5) * 1000, "p95": pct(ingest_lat, 0.95) * 1000}
            for mode in modes:
                svc.settings = settings.model_copy(update={"search_mode": mode})
                table, search_lat = await evaluate(svc, samples, dia_of)
                report["modes"][mode] = {
                    "table": table,
                    "search_ms": {"p50": pct(search_lat, 0.5) * 1000, "p95": pct(search_lat, 0.95) * 1000},
                }
                print(f"\n{mode}: {int(table['overall']['n'])} questions; search {ms(search_lat)}")
                print(f"| {'category':<12} | {'n':>4} | R@5   | R@10  | hit@10 |")
                print(f"|{'-' * 14}|{'-' * 6}|-------|-------|--------|")
                for name in (*CATEGORIES.values(), "overall"):
                    if name in table:
                        r = table[name]
                        print(f"| {name:<12} | {int(r['n']):>4} | {r['r5']:.3f} | {r['r10']:.3f} | {r['hit10']:.3f}  |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    anyio.run(main)
