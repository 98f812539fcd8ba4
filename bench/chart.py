"""The one PNG of a run: exchange throughput next to its baselines, and SCIM filter p50
latency against the number of users. matplotlib (the ``bench`` extra) is imported only here,
only when a chart is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(13, 5))
    figure.suptitle(title)

    flat = [r for r in rows if "users" not in r]
    client = "wrk" if any(r.get("client") == "wrk" for r in flat) else "python"
    bars = [
        r
        for r in flat
        if r.get("client") == client or r["scenario"].startswith(("exchange", "webhook"))
    ]
    names = [f"{r['scenario']}\n[{r.get('client', 'python')}]" for r in bars]
    medians = [r["rps_median"] for r in bars]
    spans = [
        [r["rps_median"] - r["rps_min"] for r in bars],
        [r["rps_max"] - r["rps_median"] for r in bars],
    ]
    colours = [
        "tab:gray" if r["scenario"] in ("hello", "floor", "peer") else "tab:blue" for r in bars
    ]
    left.barh(names, medians, xerr=spans, color=colours)
    left.invert_yaxis()
    left.set_xlabel("requests/s (median, min-max); grey: baselines")
    left.set_title("throughput")
    left.tick_params(axis="y", labelsize=8)

    filters: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "users" in row and row["scenario"].startswith("scim filter"):
            filters.setdefault(row["scenario"], []).append(row)
    for name, group in sorted(filters.items()):
        group.sort(key=lambda r: r["users"])
        right.plot([r["users"] for r in group], [r["p50_ms"] for r in group], "o-", label=name)
    right.set_xscale("log")
    right.set_xlabel("users")
    right.set_ylabel("p50 latency, ms")
    right.set_title("SCIM filter latency")
    if filters:
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no SCIM rows in this run", ha="center", transform=right.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
