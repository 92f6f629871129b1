"""nnU-Net's topology rules and feature-map-size estimate, against hand-derived values."""

from __future__ import annotations

import importlib.util

import pytest

from medtoken.planning.topology import conv_feature_map_size, get_pool_and_conv_props, pad_shape


def test_pad_shape_rounds_up_and_keeps_multiples() -> None:
    assert pad_shape([36, 50, 35], [8, 8, 8]).tolist() == [40, 56, 40]
    assert pad_shape([32, 20], [8, 4]).tolist() == [32, 20]


def test_isotropic_topology() -> None:
    # 36, 50, 35 -> pooled 3 times (sizes 18/25/18, 9/13/9, 5/7/5 < 8) -> divisible by 8
    num_pool, strides, kernels, patch, divisor = get_pool_and_conv_props(
        [1.0, 1.0, 1.0], [36, 50, 35], 4, 999999)
    assert num_pool == [3, 3, 3]
    assert strides == ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert kernels == ((3, 3, 3),) * 4
    assert patch == (40, 56, 40)
    assert divisor.tolist() == [8, 8, 8]


def test_anisotropic_topology() -> None:
    # spacing (4, 1, 1): the in-plane axes pool alone until their spacing reaches 4; the z kernel
    # is 1 while z is more than 2x coarser; the last pool is in-plane only (z is 5 < 8)
    num_pool, strides, kernels, patch, _ = get_pool_and_conv_props(
        [4.0, 1.0, 1.0], [20, 128, 128], 4, 999999)
    assert num_pool == [2, 5, 5]
    assert strides == ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert kernels == ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert patch == (20, 128, 128)


def test_single_axis_needs_three_times_the_minimum() -> None:
    # only axis 1 is poolable (size >= 8); alone, it pools only while its size is >= 12 (3 x 4):
    # 20 -> 10, then 10 < 12 stops
    num_pool, strides, _, _, _ = get_pool_and_conv_props([1.0, 1.0], [4, 20], 4, 999999)
    assert num_pool == [0, 1] and strides == ((1, 1), (1, 2))


def test_feature_map_size_by_hand() -> None:
    # Hippocampus 3d_fullres: patch 40x56x40, 4 stages 32..256, 3 labels (derivation in
    # docs/nnunet.md): encoder 7616000 + decoder 11289600 + segmentation 268800
    strides = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    size = conv_feature_map_size((40, 56, 40), strides, (32, 64, 128, 256), (2, 2, 2, 2),
                                 (2, 2, 2), 3)
    assert size == 7616000 + 11289600 + 268800


@pytest.mark.skipif(importlib.util.find_spec("dynamic_network_architectures") is None,
                    reason="dynamic_network_architectures not installed (extra nnunet-check)")
@pytest.mark.parametrize(("patch", "strides", "features", "kernels"), [
    ((40, 56, 40), ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)), (32, 64, 128, 256),
     ((3, 3, 3),) * 4),
    ((20, 128, 128), ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)),
     (32, 64, 128, 256, 320, 320), ((1, 3, 3),) * 2 + ((3, 3, 3),) * 4),
    ((56, 40), ((1, 1), (2, 2), (2, 2), (2, 2)), (32, 64, 128, 256), ((3, 3),) * 4),
])
def test_feature_map_size_matches_dynamic_network_architectures(
        patch: tuple[int, ...], strides: tuple[tuple[int, ...], ...],
        features: tuple[int, ...], kernels: tuple[tuple[int, ...], ...]) -> None:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn

    n = len(strides)
    conv = nn.Conv3d if len(patch) == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if len(patch) == 3 else nn.InstanceNorm2d
    net = PlainConvUNet(1, n, features, conv, kernels, strides, [2] * n, 3, [2] * (n - 1),
                        conv_bias=True, norm_op=norm, nonlin=nn.LeakyReLU)
    expected = int(net.compute_conv_feature_map_size(patch))
    assert conv_feature_map_size(patch, strides, features, [2] * n, [2] * (n - 1), 3) == expected
