"""Per-class Dice of DeepSeg's nnU-Net engine against nnU-Net's own ``nnUNetPredictor``, and how close to a tie
our logits are where the two disagree.

Cases: the shipped trained fixture (3d_fullres folds 0+1 with and without mirroring, 2d fold 0) on the tests'
oblique case, and the bar fixture (``nnunet_vs_reference.build_bar_fixture``: nnunetv2-planned, features 8-64,
patch 24x80x80, nearly untrained) on the bar's input, fold 0, mirroring on. Our engine runs in this process with
the PyTorch backend; the reference with ``predict_from_files_sequential``. For each case: per-class Dice, the
fraction of voxels whose labels differ, and the fraction of network-grid voxels whose two largest logits are
within 1e-4 / 1e-3 of each other (our logits are kept in half precision as nnU-Net keeps them, so a gap below
1e-4 is an exact tie, which both engines break towards the lower label).

    python benchmarks/nnunet_agreement.py [--no-bar]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "benchmarks"))

from fixtures.make_nnunet_model import ensure_nnunet_fixture, make_case, trainer_folder, write_case  # noqa: E402
from fixtures.nnunet_runs import dice_per_class, run_reference  # noqa: E402


def oblique(deg: float = 17, tilt: bool = True) -> np.ndarray:
    a = np.deg2rad(deg)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return d @ np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]]) if tilt else d


def ours(train_dir: Path, images, folds, mirror: bool):
    """Our labels on the input grid and our averaged logits on the network grid."""
    from deepseg.inference.backends import using
    from deepseg.io import read_volume
    from deepseg.models.nnunet import load_nnunet_folder
    from deepseg.progress import Progress

    model = load_nnunet_folder(train_dir, folds=folds)
    prepared = model.prepare([read_volume(p) for p in images])
    with using("torch"):
        logits = model.predict_logits(prepared, device="cpu", tta=mirror, progress=Progress())
    labels = model.labels_from_probabilities(model.restore(logits, prepared))
    return labels, logits.numpy()


def report(name: str, train_dir: Path, images, folds, mirror: bool, work: Path) -> None:
    import SimpleITK as sitk

    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(run_reference(train_dir, images, work / "ref.nii.gz", folds,
                                                                  mirror))))
    labels, logits = ours(train_dir, images, folds, mirror)
    classes = [int(c) for c in np.union1d(np.unique(ref), np.unique(labels)) if c]
    dice = dice_per_class(labels, ref, classes)
    top2 = np.sort(logits, axis=0)[-2:]
    gap = top2[1] - top2[0]
    print(f"| {name} | {' / '.join(f'{dice[c]:.4f}' for c in classes)} | {np.mean(labels != ref):.2e} | "
          f"{np.mean(gap < 1e-4):.2e} / {np.mean(gap < 1e-3):.2e} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-bar", action="store_true", help="skip the (slow) bar fixture")
    args = ap.parse_args()
    results = ensure_nnunet_fixture(REPO / "Testing" / "_fixtures")
    print("| case | Dice per class vs nnUNetPredictor | labels differ | top-2 logit gap < 1e-4 / < 1e-3 |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = write_case(work, "test_000", make_case(4242, size_ijk=(60, 19, 64), spacing=(0.75, 3.0, 0.7),
                                                        direction=oblique(), origin=(-20.5, 13.25, 40.0)))
        for mirror in (False, True):
            report(f"trained fixture 3d_fullres folds 0+1, mirror {'on' if mirror else 'off'}",
                   trainer_folder(results, "3d_fullres"), images, (0, 1), mirror, work)
        report("trained fixture 2d fold 0, mirror on", trainer_folder(results, "2d"), images, (0,), True, work)
        if not args.no_bar:
            from nnunet_vs_reference import WORK, build_bar_fixture

            bar_images = write_case(WORK / "bar_in", "bar_000", make_case(7, size_ijk=(112, 40, 112),
                                                                          spacing=(0.75, 3.0, 0.7),
                                                                          direction=oblique(tilt=False), margin=4))
            report("bar fixture fold 0, mirror on", build_bar_fixture(), bar_images, (0,), True, work)


if __name__ == "__main__":
    main()
