"""The MSTM layer probe: one block over every voxel, its mode a config value."""

from __future__ import annotations

import pytest
import torch

from medtoken import create_model
from medtoken.utils.errors import InputError


def test_probe_keeps_the_spatial_shape_and_tokens_are_all_voxels() -> None:
    model = create_model("mstm_layer_test", roi_size=(6, 10)).eval()
    x = torch.randn(2, 1, 6, 10)
    assert model(x).shape == (2, 2, 6, 10)


@pytest.mark.parametrize("mode", ["parallel", "recurrent"])
def test_probe_modes_compute_the_same_function(mode: str) -> None:
    torch.manual_seed(0)
    reference = create_model("mstm_layer_test").eval()
    other = create_model("mstm_layer_test", **{"mstm.mlstm_mode": mode}).eval()
    other.load_state_dict(reference.state_dict())
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(other(x), reference(x), atol=2e-3, rtol=0)


def test_probe_rejects_a_width_the_heads_do_not_divide() -> None:
    with pytest.raises(InputError, match=r"dim \(9\) must be divisible by mstm.num_heads"):
        create_model("mstm_layer_test", dim=9)
