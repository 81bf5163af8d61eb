"""What `pip install` puts into site-packages: one distinct import name, nothing generic."""

from __future__ import annotations

import sysconfig
from importlib.metadata import distributions

import milvus_memory_mcp
import milvus_memory_mcp.tools


def test_the_distribution_installs_no_generic_top_level_package() -> None:
    # From site-packages itself: the checkout (on sys.path under `python -m pytest`) has a build's egg-info.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    [dist] = [d for d in distributions(path=site) if d.metadata["Name"] == "milvus-memory-mcp"]
    files = dist.files or []
    tops = {f.parts[0] for f in files if f.parts}
    assert not tops & {"server", "tools", "tests", "bench"}, sorted(tops)
    assert milvus_memory_mcp.tools.__name__ == "milvus_memory_mcp.tools"


def test_the_tokenizer_ships_as_package_data() -> None:
    from importlib import resources

    tokenizer = resources.files("milvus_memory_mcp.assets") / "all-MiniLM-L6-v2.tokenizer.json"
    assert tokenizer.is_file() and milvus_memory_mcp.__name__ == "milvus_memory_mcp"
