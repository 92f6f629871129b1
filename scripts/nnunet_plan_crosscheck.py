"""Compare ``medtoken plan`` with nnU-Net v2's own planner on a dataset, field by field.

Usage (needs ``pip install 'medtoken[nnunet-check]'``)::

    python scripts/nnunet_plan_crosscheck.py DATA WORK [--id 4]

DATA is any layout medtoken reads. WORK (outside the repository; created) receives an nnU-Net raw
copy (symlinks to NIfTI images; 2D masks rewritten as 0/1 PNGs with nnU-Net file names),
nnU-Net's preprocessed folder with its ``nnUNetPlans.json``, and ``medtoken_plans.json``. Prints
every differing leaf (``dataset_name`` differs by design for non-nnU-Net layouts) and the time
each planner took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medtoken.data.datasets import DatasetInfo, load_dataset
from medtoken.data.io import read_label, split_file_ending, write_label
from medtoken.planning.plans import MEDTOKEN_KEY, plan_dataset, plan_differences, write_plans

_RUN_NNUNET = """
import sys
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
    DatasetFingerprintExtractor)
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
    ExperimentPlanner)
if __name__ == "__main__":
    extractor = DatasetFingerprintExtractor(sys.argv[1], num_processes=2)
    extractor.show_progress_bar = False
    extractor.run(overwrite_existing=True)
    ExperimentPlanner(sys.argv[1]).plan_experiment()
"""


def to_nnunet_raw(info: DatasetInfo, raw: Path) -> None:
    """An nnU-Net raw copy of ``info``: cases renamed ``case_NNNN`` in medtoken's case order."""
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(exist_ok=True)
    ending = info.file_ending
    for i, case in enumerate(info.cases):
        name = f"case_{i:04d}"
        for c, image in enumerate(case.images):
            link = raw / "imagesTr" / f"{name}_{c:04d}{split_file_ending(image)[1]}"
            if not link.exists():
                link.symlink_to(image.resolve())
        assert case.label is not None
        labels, meta = read_label(case.label)  # 0/255 masks -> 0/1, as medtoken reads them
        write_label(labels.astype(np.uint8), meta, raw / "labelsTr" / f"{name}{ending}")
    dataset = {"channel_names": {str(i): n for i, n in enumerate(info.channel_names)},
               "labels": {n: v for v, n in sorted(info.labels.items())},
               "numTraining": len(info.cases), "file_ending": ending, "name": info.name}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("work")
    parser.add_argument("--id", type=int, default=999, help="nnU-Net dataset id")
    args = parser.parse_args()
    info = load_dataset(args.data)
    work = Path(args.work).resolve()
    raw = work / "raw" / f"Dataset{args.id:03d}_{(info.name or 'data').replace(' ', '')}"
    to_nnunet_raw(info, raw)
    script = work / "run_nnunet.py"
    script.write_text(_RUN_NNUNET)
    env = {**os.environ, "nnUNet_raw": str(raw.parent),
           "nnUNet_preprocessed": str(work / "preprocessed"), "nnUNet_results": str(work / "res")}
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), raw.name], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    nnunet_s = time.perf_counter() - start
    theirs = json.loads((work / "preprocessed" / raw.name / "nnUNetPlans.json").read_text())
    start = time.perf_counter()
    ours, _ = plan_dataset(info)
    medtoken_s = time.perf_counter() - start
    write_plans(ours, work / "medtoken_plans.json")
    ours.pop(MEDTOKEN_KEY)
    found = plan_differences(ours, theirs)
    print("\n".join(found) if found else "no differences")
    print(f"nnU-Net fingerprint + plan: {nnunet_s:.1f} s; medtoken plan: {medtoken_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
