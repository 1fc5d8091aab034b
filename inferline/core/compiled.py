"""The hot path is compiled in place (tools/compile_hot_path.py) and Python imports an extension
module before the `.py` beside it: one built before its source last changed would run old code
without a word. The package refuses to start then (a few directory listings, once per process)."""

from __future__ import annotations

import sysconfig
from pathlib import Path


def stale_extensions(package_dir: Path) -> list[Path]:
    """Extension modules under `package_dir` older than the source beside them."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    stale = []
    for ext in package_dir.rglob(f"*{suffix}"):
        source = ext.with_name(ext.name.removesuffix(suffix) + ".py")
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            stale.append(ext)
    return stale


def refuse_stale_extensions(package_dir: Path) -> None:
    stale = stale_extensions(package_dir)
    if stale:
        names = ", ".join(p.name for p in stale[:3])
        raise ImportError(
            f"compiled modules older than their sources ({names}): run `make compile`, or `make pure` "
            "to run the sources interpreted"
        )
