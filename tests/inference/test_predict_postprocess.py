"""`predict --postprocess FILE`: the plan is applied to the written labels; a plan for other
labels is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.postprocessing.plan import PostprocessingPlan, apply_postprocessing, write_plan
from tests.inference.conftest import predict_cli


def test_postprocess_applies_the_plan_to_the_labels(runs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    plan = write_plan(PostprocessingPlan(steps=((1,), (2,)), labels=(1, 2)), tmp_path / "pp.json")
    assert predict_cli(tmp_path / "raw", runs["in"], runs["a"]) == 0
    assert predict_cli(tmp_path / "pp", runs["in"], runs["a"], extra=("--postprocess",
                                                                       str(plan))) == 0
    changed = False
    for raw in sorted((tmp_path / "raw").glob("*.nii.gz")):
        before = np.asarray(nib.load(str(raw)).dataobj)
        after = np.asarray(nib.load(str(tmp_path / "pp" / raw.name)).dataobj)
        np.testing.assert_array_equal(after, apply_postprocessing(before, plan))
        changed |= bool((after != before).any())
    assert changed  # a fresh model's labels are fragmented: the plan removes components


def test_a_plan_for_other_labels_is_refused(runs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(PostprocessingPlan(steps=((3,),), labels=(1, 2, 3)), tmp_path / "pp.json")
    out = tmp_path / "out"
    assert predict_cli(out, runs["in"], runs["a"], extra=("--postprocess", str(plan))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pp.json" in err[0] and "labels [1, 2, 3]" in err[0], err
    assert not out.exists()
