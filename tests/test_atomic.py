"""Atomic writes: all or nothing, usual permissions; every writer of the library uses them."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medtoken.utils.atomic import atomic_path, atomic_write_text


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_file_has_umask_permissions_and_suffix_kept(tmp_path: Path) -> None:
    target = tmp_path / "case.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


# --- every writer of the library, interrupted halfway ------------------------------------------

def _half_then_fail(error: BaseException, bytes_method: bool):
    """A stand-in serializer: writes half a file to its target, then raises ``error``."""
    real_write_bytes = Path.write_bytes

    def write(*args, **kwargs) -> None:
        target = next(a for a in (*args, *kwargs.values()) if isinstance(a, (str, Path)))
        real_write_bytes(Path(target), b"half a file")
        raise error

    def write_bytes(self: Path, data: bytes) -> None:
        real_write_bytes(self, data[: len(data) // 2])
        raise error

    return write_bytes if bytes_method else write


def _nifti_label(path: Path) -> None:
    from medtoken.data.io import ImageMeta, write_label

    write_label(np.zeros((4, 4, 4), np.uint8), ImageMeta((4, 4, 4), (1.0,) * 3, np.eye(4),
                                                         ".nii.gz", "test"), path)


def _png_image(path: Path) -> None:
    from medtoken.data.io import ImageMeta, write_image

    write_image(np.zeros((1, 4, 4)), ImageMeta((4, 4), (1.0, 1.0), np.eye(4), ".png", "t"), path)


def _checkpoint(path: Path) -> None:
    from medtoken.models.checkpoint import save_checkpoint

    save_checkpoint(path, {"family": "unet", "epoch": 1})


def _summary(path: Path) -> None:
    from medtoken.metrics.evaluate import write_summary

    write_summary({"metric_per_case": [], "mean": {}}, path)


# (writer, file name, what to patch: (module, attribute))
WRITERS = [
    (_nifti_label, "case.nii.gz", ("nibabel", "save")),
    (_png_image, "case.png", ("PIL.Image.Image", "save")),
    (_checkpoint, "checkpoint_last.pt", ("torch", "save")),
    (_summary, "summary.json", ("pathlib.Path", "write_bytes")),
]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "Ctrl-C"])
@pytest.mark.parametrize(("writer", "name", "patch"), WRITERS, ids=[w[1] for w in WRITERS])
def test_writer_failing_halfway_keeps_the_old_file(writer, name: str, patch: tuple[str, str],
                                                   error: BaseException, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / name
    writer(target)  # a complete old file (with its companions: summary.csv)
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    failing = _half_then_fail(error, bytes_method=patch[1] == "write_bytes")
    monkeypatch.setattr(".".join(patch), failing)
    with pytest.raises(type(error)):
        writer(target)
    monkeypatch.undo()
    now = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert now == old, "an old file changed or a temporary file was left behind"


_KILLED_WRITER = """
import os, signal, sys
from medtoken.utils.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"new" * 1000)
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_during_a_write_keeps_the_old_file(tmp_path: Path) -> None:
    """Nothing can clean up after SIGKILL: the old file stays whole and the half-written
    temporary is a hidden dot-file, which dataset scanning and evaluation ignore."""
    target = tmp_path / "log.csv"
    atomic_write_text(target, "old")
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], check=False,
                          capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    assert all(p.name == "log.csv" or p.name.startswith(".log.") for p in tmp_path.iterdir())


# Calls that write a file; in the library each must write to the temporary path of atomic_path
_WRITE_CALL = re.compile(r"torch\.save\(|torch\.jit\.save\(|torch\.onnx\.export\(|\.savefig\(|"
                         r"nib\.save\(|(?<!self)\.save\(|\.write_text\(|\.write_bytes\(|"
                         r"open\([^)]*[\"'](?:w|a|wb|ab|x)[\"']")
# Writers that take their target as an argument, with the caller that hands them atomic_path's tmp
_PATH_TAKING_WRITERS = {
    "export/onnx.py": "export/pipeline.py (export_model: with atomic_path(output) as tmp)",
    "export/torchscript.py": "export/pipeline.py (export_model: with atomic_path(output) as tmp)",
}


def test_library_writes_only_through_atomic_paths() -> None:
    """A static guard: every write call in src/medtoken targets ``tmp`` (from ``atomic_path``),
    or sits in a writer listed in ``_PATH_TAKING_WRITERS`` whose caller provides ``tmp``."""
    src = Path(__file__).resolve().parents[1] / "src" / "medtoken"
    offenders = []
    for path in sorted(src.rglob("*.py")):
        name = str(path.relative_to(src))
        if path.name == "atomic.py" or name in _PATH_TAKING_WRITERS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if _WRITE_CALL.search(code) and "tmp" not in code and "devnull" not in code:
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []
    for name, caller in _PATH_TAKING_WRITERS.items():
        if (src / name).exists():
            text = (src / caller.split(" ")[0]).read_text(encoding="utf-8")
            assert "atomic_path" in text, (name, caller)
