"""Small synthetic segmentation datasets for tests, demos and smoke runs.

Every case shows two touching structures with irregular shapes (deformed ellipsoids, labels 1 and
2) in an MRI-like image: a smooth random texture, a smooth multiplicative bias field, partial-volume
blur and Gaussian noise. Sizes, spacings (anisotropic for odd cases), orientations (oblique for
every third case) and origins vary per case, and 3D intensities are scaled per case as in
real MRI. The content depends only on ``seed`` and the case index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from medtoken.data.io import ImageMeta, write_image, write_label
from medtoken.utils.atomic import atomic_write_text

__all__ = ["LAYOUTS", "SYNTHETIC_LABELS", "make_synthetic_case", "make_synthetic_dataset"]

LAYOUTS = ("nnunet", "msd", "folder2d")
SYNTHETIC_LABELS = {"background": 0, "structure_a": 1, "structure_b": 2}
SIZE_RANGE = {2: (48, 96), 3: (24, 40)}  # voxels per axis, inclusive
SPACING_RANGE = (0.7, 1.5)  # mm
MAX_OBLIQUE_DEG = 25.0
BACKGROUND_LEVEL = 100.0  # image intensities are built in 0..255 (2D files store uint8)
TEXTURE_STD, NOISE_STD, BIAS_STRENGTH = 12.0, 10.0, 0.15
INTENSITY_SCALES = (1.0, 1.0, 30.0)  # 3D only: some cases have a very different scale
MIN_FRACTION_B = 0.01  # structure 2 covers at least this fraction of the image
DEFORM_STRENGTH = 0.3  # amplitude of the random deformation of the ellipsoid distance
MAX_PLACEMENT_TRIES = 20
PARTIAL_VOLUME_SIGMA = 0.5  # voxels of boundary blur


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth Gaussian random field with zero mean and unit std, ``(*S)``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap", truncate=3.0)
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _blob(rng: np.random.Generator, grid: np.ndarray, center: np.ndarray,
          radii: np.ndarray) -> np.ndarray:
    """Mask ``(*S)`` of a randomly deformed ellipsoid; ``grid`` ``(D, *S)`` holds coordinates."""
    expand = (-1,) + (1,) * (grid.ndim - 1)
    offset = (grid - center.reshape(expand)) / radii.reshape(expand)  # (D, *S)
    distance = np.sqrt((offset**2).sum(axis=0))  # < 1 inside the ellipsoid
    sigma = min(grid.shape[1:]) / 8.0  # scale of the shape irregularities
    return distance + DEFORM_STRENGTH * _smooth_field(rng, grid.shape[1:], sigma) < 1.0


def _make_labels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Two irregular blobs that share a boundary: label 1 (larger) and 2. Returns ``(*S)``."""
    dims = len(shape)
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij"))
    labels = np.zeros(shape, dtype=np.uint8)
    for _ in range(MAX_PLACEMENT_TRIES):
        radii_a, radii_b = rng.uniform(0.35, 0.5, dims), rng.uniform(0.28, 0.4, dims)
        center_a = rng.uniform(-0.15, 0.15, dims)
        direction = rng.standard_normal(dims)
        direction /= np.linalg.norm(direction)
        # radius of each ellipsoid along `direction`; centres 0.75 * (sum) apart -> they overlap
        reach = sum(1.0 / np.linalg.norm(direction / radii) for radii in (radii_a, radii_b))
        center_b = center_a + 0.75 * reach * direction
        inside_a = _blob(rng, grid, center_a, radii_a)
        inside_b = _blob(rng, grid, center_b, radii_b)  # label 1 wins where they overlap
        labels = np.where(inside_a, 1, np.where(inside_b, 2, 0)).astype(np.uint8)
        touching = (ndimage.binary_dilation(labels == 1) & (labels == 2)).any()
        if touching and (labels == 2).sum() >= MIN_FRACTION_B * labels.size:
            break
    return labels


def _make_channel(rng: np.random.Generator, labels: np.ndarray, channel: int) -> np.ndarray:
    """One MRI-like channel ``(*S)`` in 0..255; structure contrast alternates with the channel."""
    shape = labels.shape
    sign = 1.0 if channel % 2 == 0 else -1.0
    level_a = BACKGROUND_LEVEL + sign * rng.uniform(60.0, 80.0)
    level_b = BACKGROUND_LEVEL - sign * rng.uniform(50.0, 65.0)
    image = BACKGROUND_LEVEL + TEXTURE_STD * _smooth_field(rng, shape, 1.5)
    image = np.where(labels == 1, level_a + 0.5 * (image - BACKGROUND_LEVEL), image)
    image = np.where(labels == 2, level_b + 0.5 * (image - BACKGROUND_LEVEL), image)
    image = ndimage.gaussian_filter(image, PARTIAL_VOLUME_SIGMA)  # partial volume at boundaries
    image = image * np.exp(BIAS_STRENGTH * _smooth_field(rng, shape, max(shape) / 3.0))
    image = image + rng.normal(0.0, NOISE_STD, shape)
    return np.clip(image, 0.0, 255.0)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 rotation by up to ``MAX_OBLIQUE_DEG`` about each axis."""
    rot = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(rng.uniform(-MAX_OBLIQUE_DEG, MAX_OBLIQUE_DEG, 3))):
        i, j = [a for a in range(3) if a != axis]
        step = np.eye(3)
        step[[i, i, j, j], [i, j, i, j]] = [np.cos(angle), -np.sin(angle), np.sin(angle),
                                            np.cos(angle)]
        rot = step @ rot
    return rot


def _make_geometry(rng: np.random.Generator, index: int, spatial_dims: int,
                   ending: str) -> tuple[tuple[int, ...], tuple[float, ...], np.ndarray]:
    """Shape, spacing and affine of case ``index`` (2D natural images: spacing 1, identity)."""
    lo, hi = SIZE_RANGE[spatial_dims]
    shape = tuple(int(n) for n in rng.integers(lo, hi + 1, spatial_dims))
    if spatial_dims == 2 and ending == ".png":
        return shape, (1.0, 1.0), np.eye(4)
    if index % 2 == 1:  # anisotropic
        spacing = tuple(float(s) for s in rng.uniform(*SPACING_RANGE, spatial_dims))
    else:
        spacing = (float(rng.uniform(*SPACING_RANGE)),) * spatial_dims
    rot = _rotation(rng) if index % 3 == 2 else np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(list(spacing) + [1.0] * (3 - spatial_dims))
    affine[:3, 3] = rng.uniform(-120.0, 120.0, 3)
    return shape, spacing, affine


def make_synthetic_case(seed: int, index: int, spatial_dims: int = 3, num_channels: int = 1,
                        ending: str = ".nii.gz") -> tuple[np.ndarray, np.ndarray, ImageMeta]:
    """One synthetic case.

    Returns:
        The image ``(C, *S)`` float32, the labels ``(*S)`` uint8 in {0, 1, 2} and the meta.
    """
    if spatial_dims not in SIZE_RANGE:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    rng = np.random.default_rng([seed, index])
    shape, spacing, affine = _make_geometry(rng, index, spatial_dims, ending)
    labels = _make_labels(rng, shape)
    image = np.stack([_make_channel(rng, labels, c) for c in range(num_channels)])  # (C, *S)
    if spatial_dims == 3:
        image = image * rng.choice(INTENSITY_SCALES)
    meta = ImageMeta(shape, spacing, affine, ending, source=f"synthetic:{seed}:{index}")
    return image.astype(np.float32), labels, meta


def _channel_names(num_channels: int) -> dict[str, str]:
    names = ["MRI"] + [f"MRI{k}" for k in range(1, num_channels)]
    return {str(k): name for k, name in enumerate(names)}


def _check_args(spatial_dims: int, layout: str, num_channels: int) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if spatial_dims not in SIZE_RANGE:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if layout == "folder2d" and spatial_dims != 2:
        raise ValueError(f"layout 'folder2d' needs spatial_dims=2, got {spatial_dims}")
    single_file_2d = spatial_dims == 2 and layout in ("folder2d", "msd")
    if single_file_2d and num_channels not in (1, 3):
        raise ValueError(f"2D layout {layout!r} stores 1 (gray) or 3 (RGB) channels, got "
                         f"{num_channels}")


def make_synthetic_dataset(out_dir: str | os.PathLike[str], spatial_dims: int = 3,
                           num_cases: int = 12, seed: int = 0, layout: str = "nnunet",
                           num_channels: int = 1) -> Path:
    """Write a complete synthetic dataset (same seed -> identical files).

    Args:
        out_dir: the dataset root to create (existing files of the same names are replaced).
        spatial_dims: 3 (``.nii.gz``) or 2 (``.png``).
        num_cases: number of labelled cases.
        seed: the content depends only on the seed and the case index.
        layout: ``"nnunet"`` (imagesTr/{case}_{XXXX}, labelsTr/), ``"msd"`` (``training`` list,
            4D NIfTI for several channels) or ``"folder2d"`` (images/ + masks/, case names
            with spaces and parentheses).
        num_channels: image channels.

    Returns:
        The dataset root.
    """
    _check_args(spatial_dims, layout, num_channels)
    if num_cases < 1:
        raise ValueError(f"num_cases must be >= 1, got {num_cases}")
    root = Path(out_dir)
    ending = ".nii.gz" if spatial_dims == 3 else ".png"
    training = []
    for index in range(num_cases):
        image, labels, meta = make_synthetic_case(seed, index, spatial_dims, num_channels, ending)
        if layout == "nnunet":
            case_id = f"case_{index:03d}"
            for c in range(num_channels):
                write_image(image[c], meta, root / "imagesTr" / f"{case_id}_{c:04d}{ending}")
            write_label(labels, meta, root / "labelsTr" / f"{case_id}{ending}")
        elif layout == "msd":
            case_id = f"case_{index:03d}"
            write_image(image, meta, root / "imagesTr" / f"{case_id}{ending}")
            write_label(labels, meta, root / "labelsTr" / f"{case_id}{ending}")
            training.append({"image": f"./imagesTr/{case_id}{ending}",
                             "label": f"./labelsTr/{case_id}{ending}"})
        else:
            case_id = f"case ({index})"
            write_image(image, meta, root / "images" / f"{case_id}{ending}")
            write_label(labels, meta, root / "masks" / f"{case_id}{ending}")
    atomic_write_text(root / "dataset.json", json.dumps(
        _dataset_json(layout, spatial_dims, num_cases, num_channels, ending, training), indent=2))
    return root


def _dataset_json(layout: str, spatial_dims: int, num_cases: int, num_channels: int,
                  ending: str, training: list[dict[str, str]]) -> dict[str, object]:
    name = f"Synthetic{spatial_dims}D"
    if layout == "msd":
        return {"name": name, "tensorImageSize": "4D" if num_channels > 1 else "3D",
                "modality": _channel_names(num_channels),
                "labels": {str(v): k for k, v in SYNTHETIC_LABELS.items()},
                "numTraining": num_cases, "numTest": 0, "training": training}
    if layout == "nnunet":
        return {"name": name, "channel_names": _channel_names(num_channels),
                "labels": SYNTHETIC_LABELS, "numTraining": num_cases, "file_ending": ending}
    return {"name": name, "labels": SYNTHETIC_LABELS}
