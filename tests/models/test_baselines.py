"""Dense MONAI baselines: presets, nnU-Net planning, fixed-size UNETR."""

from __future__ import annotations

import pytest
import torch

from medtoken import create_model
from medtoken.models.baselines import nnunet_plan
from medtoken.utils.errors import InputError


def test_nnunet_plan_isotropic_pools_until_feature_map_is_4() -> None:
    kernels, strides = nnunet_plan((64, 160, 160), (1.0, 1.0, 1.0))
    # 64 -> 4 after four halvings; 160 -> 5 after five halvings; capped at 6 stages
    assert strides[0] == (1, 1, 1)
    total = [1, 1, 1]
    for s in strides:
        total = [t * v for t, v in zip(total, s, strict=True)]
    assert total == [16, 32, 32]
    assert len(kernels) == len(strides)


def test_nnunet_plan_anisotropic_keeps_coarse_axis_unpooled_first() -> None:
    kernels, strides = nnunet_plan((20, 192, 192), (5.0, 0.8, 0.8))
    assert strides[1] == (1, 2, 2)  # the 5 mm axis is not pooled while it is much coarser
    assert kernels[0] == (1, 3, 3)


def test_dynunet_input_multiple_follows_plan() -> None:
    model = create_model("dynunet3d", roi_size=(40, 56, 40), base_filters=4, max_filters=16)
    assert model.input_multiple == (8, 8, 8)
    x = torch.randn(1, 1, 40, 56, 40)
    assert model(x).shape == (1, 2, 40, 56, 40)


def test_monai_unetr_is_fixed_size_and_checks_divisibility() -> None:
    with torch.device("meta"):
        model = create_model("monai_unetr3d", roi_size=(32, 32, 32), hidden_size=48, mlp_dim=96,
                             num_heads=2, feature_size=4)
    assert model.fixed_input_size == (32, 32, 32)
    with pytest.raises(InputError, match="divisible by 16"):
        create_model("monai_unetr3d", roi_size=(40, 40, 40))


def test_unknown_override_lists_valid_keys() -> None:
    with pytest.raises(InputError, match=r"unknown key 'num_clases'.*num_classes"):
        create_model("unet3d", num_clases=3)


def test_unknown_preset_suggests_closest() -> None:
    with pytest.raises(InputError, match=r"unknown model preset 'unet_3d'.*unet3d"):
        create_model("unet_3d")
