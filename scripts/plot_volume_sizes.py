"""Whole-case predict time and peak RSS against the volume size, one line per model and window.

Reads the ``results.json`` of several ``medtoken benchmark --mode volume --volume-size ...`` runs
(one per size) and draws docs/img/bench_volume_sizes.png::

    python scripts/plot_volume_sizes.py OUT.png RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from medtoken.plots.charts import pyplot, save_figure


def main(out: str, runs: list[str]) -> None:
    lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for run in runs:
        for record in json.loads((Path(run) / "results.json").read_text()):
            voxels = math.prod(record["case_shapes"][0])
            window = "×".join(str(n) for n in record["input_size"][2:])
            lines[f"{record['model']} ({window})"].append(
                (voxels / 1e6, record["latency_ms"]["median"] / 1e3,
                 record["peak_rss_mb"] / 1024))
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for spec, points in lines.items():
        points.sort()
        mvox, seconds, gib = zip(*points, strict=True)
        left.plot(mvox, seconds, marker="o", label=spec)
        right.plot(mvox, gib, marker="o", label=spec)
    for axis, title in ((left, "predict time per case (s)"), (right, "peak RSS (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("case size (million voxels)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("whole-case prediction, slab stitching, batch of 2 windows, 1 CPU thread")
    fig.tight_layout()
    save_figure(fig, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
