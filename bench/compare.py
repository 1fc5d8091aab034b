"""Two results files side by side: each figure of A, of B, and B / A.

    python -m bench.compare bench/results/A.json bench/results/B.json [--all] [--match TEXT]

By default the headline figures (per phase: spans/s, latency percentiles, CPU per 10k spans,
peak RSS, losses; per stage: µs/span; per query: median ms); --all lists every number in both
files. For spans/s a ratio above 1 is better; for ms, µs, CPU seconds and MB below 1 is better.
Compare runs from the same machine (both files record it under "machine").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

HEADLINE = (
    "accepted_spans_per_s",
    "persisted_spans_per_s",
    "persisted_genai_spans_per_s",
    "ack_latency_ms.p50",
    "ack_latency_ms.p95",
    "ack_latency_ms.p99",
    "service_cpu_s_per_10k_spans",
    "peak_rss_mb",
    "refused_total",
    "lost_spans",
    "lost_inferences",
    "us_per_span",
    "median_ms",
    "load_s",
    "total_s",
)


def flatten(tree: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out


def headline(key: str) -> bool:
    if key.startswith(("settings.", "machine.", "targets.")) or ".payloads." in key:
        return False
    return any(key == h or key.endswith("." + h) for h in HEADLINE)


def compare(a: dict[str, Any], b: dict[str, Any], everything: bool = False, match: str = "") -> list[str]:
    fa, fb = flatten(a), flatten(b)
    keys = [k for k in fa if k in fb and (everything or headline(k)) and match in k]
    lines = []
    for side, doc in (("A", a), ("B", b)):
        m = doc.get("machine", {})
        lines.append(
            f"{side}: {doc.get('started_at', '?')}  {m.get('nproc', '?')} CPUs {m.get('cpu_model', '')}"
            f"  commit {str(doc.get('git', {}).get('commit', ''))[:10]}"
        )
    if a.get("machine", {}).get("cpu_model") != b.get("machine", {}).get("cpu_model"):
        lines.append("warning: the runs come from different machines")
    width = max((len(k) for k in keys), default=10)
    lines.append("")
    lines.append(f"{'figure':<{width}}  {'A':>14}  {'B':>14}  {'B / A':>7}")
    for k in keys:
        ratio = f"{fb[k] / fa[k]:7.2f}" if fa[k] else "    n/a"
        lines.append(f"{k:<{width}}  {fa[k]:>14,.2f}  {fb[k]:>14,.2f}  {ratio}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--all", action="store_true", help="every number, not only the headline figures")
    p.add_argument("--match", default="", help="only figures whose dotted name contains this")
    args = p.parse_args(argv)
    a, b = (orjson.loads(path.read_bytes()) for path in (args.a, args.b))
    print("\n".join(compare(a, b, everything=args.all, match=args.match)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
