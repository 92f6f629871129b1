"""postprocess_folder: geometry and file type kept, inputs untouched, refusals first."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtoken.postprocessing.folder import postprocess_folder
from medtoken.postprocessing.plan import PostprocessingPlan
from medtoken.utils.errors import InputError

from .conftest import AFFINE, BIG, SMALL, cube, save_nifti

PLAN = PostprocessingPlan(((1,),), (1,))


def test_nifti_folder_keeps_geometry_and_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    save_nifti(src / "a.nii.gz", cube((12, 12, 12), (1, BIG), (1, SMALL)))
    save_nifti(src / "b.nii.gz", cube((12, 12, 12), (1, BIG)))
    (src / "summary.json").write_text("{}")  # not a label file: ignored
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    written = postprocess_folder(src, tmp_path / "out", PLAN)
    assert [p.name for p in written] == ["a.nii.gz", "b.nii.gz"]
    img = nib.load(tmp_path / "out" / "a.nii.gz")
    assert np.allclose(img.affine, AFFINE)
    assert int((np.asarray(img.dataobj) == 1).sum()) == 64
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_png_folder_stays_png(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[0:3, 0:3], mask[7, 7] = 1, 1
    Image.fromarray(mask).save(src / "x.png")
    postprocess_folder(src, tmp_path / "out", PLAN)
    out = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert out.shape == (8, 8) and out[7, 7] == 0 and int(out.sum()) == 9


def test_refusals_write_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    save_nifti(src / "a.nii.gz", cube((6, 6, 6), (1, BIG)))
    save_nifti(src / "b.nii.gz", cube((6, 6, 6), (3, BIG)))  # label 3: not in the plan
    with pytest.raises(InputError, match=r"b.nii.gz: holds labels \[3\]"):
        postprocess_folder(src, tmp_path / "out", PLAN)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="output folder is the input folder"):
        postprocess_folder(src, src / ".", PLAN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no label files"):
        postprocess_folder(tmp_path / "empty", tmp_path / "out", PLAN)
