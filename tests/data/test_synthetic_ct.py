"""Generated CT-like volumes: deterministic, CT intensities, any size."""

from __future__ import annotations

import numpy as np
import pytest

from medtoken.data.synthetic_ct import make_ct_like_volume


def test_same_size_and_seed_give_the_same_volume() -> None:
    a = make_ct_like_volume((20, 24, 18), seed=3)
    b = make_ct_like_volume((20, 24, 18), seed=3)
    assert a.shape == (1, 20, 24, 18) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_ct_like_volume((20, 24, 18), seed=4))


def test_intensities_look_like_ct() -> None:
    image = make_ct_like_volume((32, 32, 24), seed=0)[0]
    assert image.min() < -900  # air around the body
    assert image.max() > 300  # bone
    soft = np.mean((image > -200) & (image < 200))
    assert 0.2 < soft < 0.9  # most of the body is soft tissue


def test_2d_and_bad_sizes() -> None:
    assert make_ct_like_volume((40, 30)).shape == (1, 40, 30)
    with pytest.raises(ValueError, match="positive"):
        make_ct_like_volume((0, 4, 4))
