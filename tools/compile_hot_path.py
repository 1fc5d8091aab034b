"""Compiles the pipeline's hot path to C with mypyc, in place, next to the sources.

    python -m tools.compile_hot_path            # build what is missing or older than its source
    python -m tools.compile_hot_path --remove   # back to the interpreted modules (`make pure`)

The modules below are plain typed Python; mypyc turns each into a C extension module that Python
imports instead of the `.py` file beside it (normalisation ~1.6x, rows, sentiment and the PII
masker ~1.3x faster: docs/performance.md). The `.py` files stay the source of truth: `make test`,
`make run` and `make bench` run this first, and the test suite refuses to start while a compiled
module is older than its source (`stale_modules`). Where no C compiler or Python headers exist the
same code runs interpreted, only slower.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The shared runtime of the compiled modules, kept inside the package (mypyc's default would put
# a hash-named module at the top level, beside `inferline`).
GROUP = "inferline.hot_path"
HOT_PATH = (
    "inferline/otlp/flatten.py",
    "inferline/otlp/json_codec.py",
    "inferline/otlp/wire.py",
    "inferline/otlp/wire_format.py",
    "inferline/otlp/wire_split.py",
    "inferline/processors/normalise.py",
    "inferline/processors/conventions/*.py",
    "inferline/processors/otel_rows.py",
    "inferline/processors/sentiment.py",
    "inferline/processors/sentiment_domain.py",
    "inferline/processors/pii.py",
    "inferline/kafka/partitioner.py",
)
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
LOG = ROOT / "build" / "mypyc.log"


def sources(root: Path = ROOT) -> list[Path]:
    # Not a package's __init__: compiled, it gets a wrong __path__ (with the group's dotted name,
    # mypyc 1.20 puts the package directory under itself) and its submodules are not found.
    found = (p for pattern in HOT_PATH for p in root.glob(pattern))
    return sorted(p for p in found if p.name != "__init__.py")


def compiled_files(root: Path = ROOT) -> list[Path]:
    """Every extension module under the package (this tool's output: the package has no others)."""
    return sorted((root / "inferline").rglob(f"*{SUFFIX}"))


def extension_of(source: Path) -> Path:
    return source.with_name(source.stem + SUFFIX)


def stale_modules(root: Path = ROOT) -> list[Path]:
    """Compiled modules that would hide a newer source, or that no longer belong to the hot path.
    (The package's own check, `inferline.core.compiled`, cannot be imported here: importing the
    package is what refuses stale modules, and this tool is what mends them.)"""
    wanted = {extension_of(s): s for s in sources(root)}
    shared = root / "inferline" / f"hot_path__mypyc{SUFFIX}"
    stale = []
    for ext in compiled_files(root):
        source = wanted.get(ext)
        if ext == shared:
            continue
        if source is None or source.stat().st_mtime > ext.stat().st_mtime:
            stale.append(ext)
    return stale


def up_to_date(root: Path = ROOT) -> bool:
    return not stale_modules(root) and all(extension_of(s).exists() for s in sources(root))


def can_compile() -> str | None:
    """Why this machine cannot build C extensions, or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        return f"no Python headers ({include})"
    return None


def remove(root: Path = ROOT) -> None:
    for ext in compiled_files(root):
        ext.unlink()


class BuildFailed(Exception):
    pass


def build() -> None:
    """mypyc's own build (setuptools' build_ext --inplace) in a child process, its output logged."""
    LOG.parent.mkdir(exist_ok=True)
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='inferline-hot-path', ext_modules=mypycify(sys.argv[1:], group_name={GROUP!r}),\n"
        "      script_args=['build_ext', '--inplace'])\n"
    )
    paths = [str(s.relative_to(ROOT)) for s in sources()]
    started = time.time()
    with LOG.open("w") as log:
        done = subprocess.run([sys.executable, "-c", script, *paths], cwd=ROOT, stdout=log, stderr=log)
    if done.returncode != 0:
        tail = LOG.read_text(errors="replace").splitlines()[-30:]
        remove()  # nothing half-built stays importable
        raise BuildFailed("\n".join(tail) + f"\nlog: {LOG}")
    # setuptools copies an extension it did not need to rebuild (same C) with its old time. The
    # build is of the sources as they were when it started: a source saved since is newer, stale.
    for ext in compiled_files():
        os.utime(ext, (started, started))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remove", action="store_true", help="delete the compiled modules")
    args = parser.parse_args(argv)
    if args.remove:
        remove()
        print("hot path: interpreted (compiled modules removed; `make compile` builds them again)")
        return
    if up_to_date():
        return
    why_not = can_compile()
    if why_not:
        remove()
        print(f"hot path: interpreted, {why_not}; it runs slower (docs/performance.md)")
        return
    print(f"hot path: compiling {len(sources())} modules with mypyc (about a minute)...", flush=True)
    remove()
    try:
        build()
    except BuildFailed as e:
        # CI requires the compiled modules; anywhere else the interpreted ones do the same work.
        if os.environ.get("INFERLINE_REQUIRE_COMPILED"):
            raise SystemExit(f"mypyc failed:\n{e}") from None
        print(f"hot path: interpreted, mypyc failed (it runs slower):\n{e}")
        return
    print("hot path: compiled")


if __name__ == "__main__":
    main()
