"""The search index saved beside the history database, so a restart does not rebuild it.

Rebuilding the index from SQLite at start costs about 5 s at 100k memories (every row read, every
text's words indexed). At a clean close with no change left pending (so every change SQLite
recorded is in the index) the index is written to `<history file>.<collection>.index/`: its
vectors as a .npy file that the next start maps into memory (copy-on-write: pages are read as
searches touch them), the other arrays beside it, and a JSON header with the mark of the history
database it reflects (`HistoryStore.index_mark`: the collection, the embedding model, the last
history sequence number, the counts of live memories and of stored vectors). At open the files
are used only when that mark equals the database's own; any write since, by any process, changes
it, and the index is rebuilt from SQLite as before. Files are written to a temporary directory
and renamed over the old one, so a kill midway leaves the previous files (whose mark no longer
matches) or none. An index saved under another keyword analysis (`keywords.ANALYSIS`) is rebuilt
too. A large index rebuilt at start is saved at once and mapped back
(`IndexedStore._map_rebuilt`), so that it costs the memory of a loaded one. Private to the owner,
like the database (the vectors are derived from the memories).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_memory_mcp.keywords import ANALYSIS
from milvus_memory_mcp.private import make_private_dir

if TYPE_CHECKING:
    from milvus_memory_mcp.search_index import SearchIndex

logger = logging.getLogger(__name__)

FORMAT = 1
HEADER = "index.json"
MEMORY_MAPPED = ("vectors",)  # the rest is read whole


def load(folder: Path, mark: dict[str, Any]) -> SearchIndex | None:
    """The saved index when its mark is `mark`; None when there is none or it is stale (then removed)."""
    import numpy as np

    from milvus_memory_mcp.search_index import SearchIndex

    try:
        header = json.loads((folder / HEADER).read_text())
    except (OSError, ValueError):
        return None
    if header.get("format") != FORMAT or header.get("mark") != mark or header.get("analysis", 1) != ANALYSIS:
        logger.info("saved search index is stale (the history or the keyword analysis changed since): rebuilding it")
        remove(folder)
        return None
    try:
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="c" if name in MEMORY_MAPPED else None, allow_pickle=False)
            for name in header["arrays"]
        }
        index = SearchIndex.restore(arrays, header["values"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("saved search index unreadable (%s): rebuilding it", e)
        remove(folder)
        return None
    logger.info("search index loaded from %s: %d memories", folder, len(index))
    return index


def save(index: SearchIndex, folder: Path, mark: dict[str, Any]) -> None:
    """Write `index` with `mark` to `folder`, replacing what is there in one rename."""
    import numpy as np

    arrays, values = index.state()
    make_private_dir(folder.parent)
    building = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=0o700)
    for name, data in arrays.items():
        np.save(building / f"{name}.npy", data, allow_pickle=False)
    header = {"format": FORMAT, "analysis": ANALYSIS, "mark": mark, "arrays": list(arrays), "values": values}
    (building / HEADER).write_text(json.dumps(header, separators=(",", ":")))
    for path in building.iterdir():
        with path.open("rb") as f:
            os.fsync(f.fileno())
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    building.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
