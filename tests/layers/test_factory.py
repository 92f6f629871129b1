"""layers.factory: the one place that picks the 2D or 3D form of a layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medtoken.layers.factory import (
    batch_norm_type,
    conv_fn,
    conv_transpose_type,
    conv_type,
    instance_norm_type,
    linear_mode,
    pool_fn,
    pool_type,
)


@pytest.mark.parametrize("sd", [2, 3])
def test_module_classes_are_torchs_own(sd: int) -> None:
    pick = {2: 0, 3: 1}[sd]
    assert conv_type(sd) is (nn.Conv2d, nn.Conv3d)[pick]
    assert conv_transpose_type(sd) is (nn.ConvTranspose2d, nn.ConvTranspose3d)[pick]
    assert batch_norm_type(sd) is (nn.BatchNorm2d, nn.BatchNorm3d)[pick]
    assert instance_norm_type(sd) is (nn.InstanceNorm2d, nn.InstanceNorm3d)[pick]
    assert pool_type("avg", sd) is (nn.AvgPool2d, nn.AvgPool3d)[pick]
    assert pool_type("max", sd) is (nn.MaxPool2d, nn.MaxPool3d)[pick]


@pytest.mark.parametrize("sd", [2, 3])
def test_functional_forms_and_mode(sd: int) -> None:
    x = torch.randn(1, 2, *(4,) * sd)
    torch.testing.assert_close(pool_fn("avg", sd)(x, 2), pool_type("avg", sd)(2)(x))
    torch.testing.assert_close(pool_fn("max", sd)(x, 2), pool_type("max", sd)(2)(x))
    assert conv_fn(sd) is (F.conv2d if sd == 2 else F.conv3d)
    assert linear_mode(sd) == ("bilinear" if sd == 2 else "trilinear")


def test_built_modules_keep_the_state_dict_keys() -> None:
    seq = nn.Sequential(conv_type(3)(1, 2, 3), batch_norm_type(3)(2))
    ref = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))
    assert list(seq.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("call", [lambda: conv_type(1), lambda: pool_fn("avg", 4),
                                  lambda: pool_type("min", 2), lambda: linear_mode(0)])  # type: ignore[arg-type]
def test_bad_arguments_are_refused(call) -> None:
    with pytest.raises(ValueError, match="must be"):
        call()
