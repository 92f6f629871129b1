"""The slab path's peak memory, measured: a fresh process's high-water mark (VmHWM) above its
baseline stays well under one float32 probability volume K x voxels x 4 bytes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SHAPE, CLASSES, ROI = (192, 192, 96), 32, (32, 32, 32)
VOLUME_BYTES = CLASSES * SHAPE[0] * SHAPE[1] * SHAPE[2] * 4  # 453 MB

CHILD = """
import json, sys
import numpy as np, torch
from medtoken.benchmark.memory import _peak_rss_bytes
from medtoken.inference.options import PredictOptions
from medtoken.inference.predict import predict_array
from medtoken.registry import create_model
from medtoken.models.checkpoint import LoadedModel

torch.set_num_threads(1)
shape, classes, roi, stitching = json.loads(sys.argv[1])
torch.manual_seed(0)
model = create_model("unet3d", num_classes=classes, channels=[4, 8], roi_size=roi).eval()
state = {"dataset": {"normalization": {"schemes": ["zscore"], "ct_stats": [None]}}}
loaded = LoadedModel(model=model, state=state, path="memory-test")
options = PredictOptions(stitching=stitching, overlap=0.0)  # fewer windows, same buffers
predict_array(loaded, np.random.rand(1, *roi).astype(np.float32), options)  # warm up
image = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
baseline = _peak_rss_bytes()
labels, _ = predict_array(loaded, image, options)
print(json.dumps({"delta": _peak_rss_bytes() - baseline, "dtype": str(labels.dtype),
                  "classes": int(len(np.unique(labels)))}))
"""


def _peak(stitching: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD,
                          json.dumps([SHAPE, CLASSES, ROI, stitching])],
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_slab_path_allocates_well_under_a_probability_volume() -> None:
    slab = _peak("slab")
    assert slab["dtype"] == "uint8" and int(slab["classes"]) > 1  # type: ignore[call-overload]
    assert int(slab["delta"]) < 0.5 * VOLUME_BYTES, slab  # type: ignore[call-overload]
    full = _peak("full")  # the measurement sees the reference path's volumes
    assert int(full["delta"]) > 2 * VOLUME_BYTES, full  # type: ignore[call-overload]
