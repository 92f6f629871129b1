"""``medtoken plan`` against nnU-Net v2's own fingerprint extractor and ExperimentPlanner.

Needs the ``nnunet-check`` extra (``nnunetv2==2.8.1``); skipped without it. nnU-Net runs in a
subprocess because ``nnunetv2.paths`` reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` once, at
import, and its fingerprint extractor starts a process pool.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medtoken.data.datasets import load_dataset
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.planning.plans import MEDTOKEN_KEY, plan_dataset, plan_differences

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                       reason="nnunetv2 not installed: pip install 'medtoken[nnunet-check]'"),
]

SAMPLES = 4000.0  # total foreground samples, the same for both (nnU-Net's default is 10e7)
_NNUNET_SCRIPT = """
import json, sys
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
    DatasetFingerprintExtractor)
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
    ExperimentPlanner)

if __name__ == "__main__":
    name, samples = sys.argv[1], float(sys.argv[2])
    extractor = DatasetFingerprintExtractor(name, num_processes=1)
    extractor.show_progress_bar = False
    extractor.num_foreground_voxels_for_intensitystats = samples
    extractor.run(overwrite_existing=True)
    ExperimentPlanner(name).plan_experiment()
"""


def _nnunet_plans(raw_dataset: Path, work: Path) -> dict[str, Any]:
    env = {**os.environ, "nnUNet_raw": str(raw_dataset.parent),
           "nnUNet_preprocessed": str(work / "preprocessed"),
           "nnUNet_results": str(work / "results"), "OMP_NUM_THREADS": "1"}
    script = work / "run_nnunet.py"
    script.write_text(_NNUNET_SCRIPT)
    done = subprocess.run([sys.executable, str(script), raw_dataset.name, str(SAMPLES)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((work / "preprocessed" / raw_dataset.name / "nnUNetPlans.json").read_text())


def _anisotropic_ct_dataset(root: Path) -> Path:
    """6 cases of 5 mm slices (one of 3 mm) along medtoken's axis 0 (nnU-Net's axis 2, so
    transpose_forward moves it first) and 0.8 mm pixels, channels CT + T2, the image inside a
    zero border (so cropping matters and the nonzero mask is used for T2)."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(6):
        shape = (10 + i % 3, 48, 56 + 2 * i)  # medtoken (x, y, z); x is the coarse axis
        coarse = 3.0 if i == 0 else 5.0
        affine = np.diag([coarse, 0.8, 0.8, 1.0])
        labels = np.zeros(shape, np.uint8)
        labels[2:-2, 14:30, 20:36] = 1
        labels[3:-3, 18:24, 26:30] = 2
        for c, scale in enumerate((400.0, 1.0)):
            image = np.zeros(shape, np.float32)
            image[:, 6:-6, 8:-8] = (rng.normal(100, 20, (shape[0], shape[1] - 12,
                                                          shape[2] - 16)) * scale)
            image[labels > 0] += 50 * scale
            nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" /
                                                         f"case_{i:03d}_{c:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(labels, affine), str(root / "labelsTr" / f"case_{i:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 6, "file_ending": ".nii.gz"}))
    return root


@pytest.mark.parametrize("kind", ["synthetic3d", "synthetic2d", "anisotropic_ct"])
def test_plans_equal_nnunets_field_by_field(tmp_path: Path, kind: str) -> None:
    name = {"synthetic3d": "Dataset901_Syn3d", "synthetic2d": "Dataset902_Syn2d",
            "anisotropic_ct": "Dataset903_Aniso"}[kind]
    if kind == "anisotropic_ct":
        raw = _anisotropic_ct_dataset(tmp_path / "raw" / name)
    else:
        raw = make_synthetic_dataset(tmp_path / "raw" / name, num_cases=6, layout="nnunet",
                                     spatial_dims=3 if kind == "synthetic3d" else 2)
    theirs = _nnunet_plans(raw, tmp_path)
    ours, _ = plan_dataset(load_dataset(raw), num_foreground_voxels=SAMPLES)
    ours.pop(MEDTOKEN_KEY)
    expected = {"2d"} if kind == "synthetic2d" else {"2d", "3d_fullres"}
    assert expected <= set(theirs["configurations"])
    if kind == "anisotropic_ct":  # the rules this dataset is there to exercise
        full = theirs["configurations"]["3d_fullres"]
        assert theirs["transpose_forward"] == [2, 0, 1]
        assert full["spacing"][0] < 5.0 and full["normalization_schemes"][0] == "CTNormalization"
        assert full["use_mask_for_norm"] == [False, True]
    assert plan_differences(ours, theirs) == []
