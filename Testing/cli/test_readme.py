"""Every shell and Python example in README.md runs, or is listed here with the reason it is not.

The code blocks are read from the README itself.  Shell blocks are split into commands (``\\``
continuations joined); each command must appear in ``COMMANDS`` (run) or ``NOT_RUN`` (with a reason),
each Python block in ``PYTHON``/``NOT_RUN``: a new example that is neither fails ``test_every_example_
is_accounted_for``.  Synopsis lines run with their ``[optional]`` parts left out and their placeholders
(``ID_OR_FOLDER``, ``CT_DIR``...) filled in; model ids that need a download run with a small local
model instead (reduced form), named in ``COMMANDS``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import save_tiny_model

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ARCHIVE = "Dataset291_TotalSegmentator_part1_organs_1559subj"

CWD = "working folders"  # default ("",): the DICOM-grid CT; "small": the 0.37 M-voxel TotalSegmentator CT

# command as written in the README -> placeholder substitutions of its reduced form (run in README order)
COMMANDS: dict[str, dict[str, str]] = {
    "deepseg models list [--json]": {},
    "deepseg models show totalseg-organs": {},
    # the TotalSegmentator archive is on GitHub (unreachable here): ~/Downloads holds the genuine nnU-Net
    # fixture packed like the published archives, under the archive's name
    f"deepseg models import ~/Downloads/{ARCHIVE}.zip": {},
    "deepseg models remove ID": {"ID": ARCHIVE.lower()},
    # ID_OR_FOLDER, ID: a small local model whose one structure is named "liver"
    "deepseg segment --model ID_OR_FOLDER --input ct.nii.gz [--input t2.nii.gz ...] --output case.seg.nrrd "
    "[--labelmap case_labels.nii.gz] [--device auto|cpu|cuda|mps] [--backend auto|torch|openvino|onnxruntime] "
    "[--tta] [--folds 0,1,2] [--overlap 0.5] "
    "[--keep-largest] [--min-component-ml 0.1] [--fill-holes] [--structures liver,spleen] [--tg263] "
    "[--uncertainty unc.nii.gz] [--overwrite] [--json]": {"ID_OR_FOLDER": "{model}", CWD: ("", "small")},
    "deepseg explain --model ID --input ct.nii.gz --segment liver --output heat.nii.gz "
    "[--method gradcam|gradcam++|hirescam|layer-sum|occlusion] [--layer NAME] [--region seg.nrrd] "
    "[--uncertainty unc.nii.gz] [--device auto|cpu|cuda|mps] [--tta] [--folds 0,1,2] [--overlap 0.5] "
    "[--overwrite] [--json]": {"ID": "{model}", CWD: ("small",)},
    "deepseg measure --segmentation case.seg.nrrd [--image ct.nii.gz] [--reference manual.seg.nrrd] "
    "[--followup followup.seg.nrrd] --output table.csv [--json]": {CWD: ("small",)},
    "deepseg export --segmentation case.seg.nrrd --reference-dicom CT_DIR --dicom-seg seg.dcm "
    "[--rtstruct rt.dcm] [--repair-uids]": {"CT_DIR": "{dicom}"},
}

# first line of a Python block -> model id replaced by the small local model (reduced form)
PYTHON = {"import deepseg": "pyliverlesionseg-liver-lesion-ct"}

NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 -e . && .venv/bin/deepseg "
    "demo --output demo_out":
        "a fresh install downloads about 4 GB of wheels; CI's Testing/run_tests.sh makes the same pinned install, "
        "and the demo runs in Testing/cli/test_models_cli.py::test_demo_second_run_needs_no_network "
        "(network, slow: about 2 min of inference per run)",
    "bash .ci/run": "this is the CI run that runs these tests",
    "python3 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 --index-url "
    "https://download.pytorch.org/whl/cpu && .venv/bin/pip install -e .":
        "PyTorch's own wheel index cannot be reached from the machines DeepSeg is built on (PyPI only)",
    "deepseg models fetch pyliverlesionseg-liver-lesion-ct":
        "run as written by Testing/cli/test_models_cli.py::test_pypi_fetch_then_offline_cache_hit (network)",
    'cohort = deepseg.batch("pyliverlesionseg-liver-lesion-ct", "/data/ct", "/data/ct_seg", keep_largest=True)':
        "needs a cohort folder (/data/ct) and starts a Dask cluster; deepseg.batch runs on a local cluster in "
        "Testing/cohort/test_batch_dask.py::test_local_cluster_completes_when_a_worker_is_killed",
    "deepseg batch --model ID_OR_FOLDER --inputs FOLDER|'GLOB'|MANIFEST.csv --output-dir OUT [--workers N] "
    "[--threads-per-worker T] [--memory-per-worker 16GB] [--scheduler tcp://HOST:PORT] [--device ...] [--tta] "
    "[--folds ...] [--overlap ...] [--keep-largest] [...the run options of segment] [--labelmap] [--measure] "
    "[--export dicom-seg,rtstruct] [--retries 2] [--overwrite] [--json]":
        "starts a Dask cluster of worker processes (tens of seconds before the first case); the command runs on "
        "local clusters in Testing/cohort/test_batch_dask.py",
    "dask scheduler --host 10.0.0.1 --port 8786 &":
        "starts a scheduler on a cluster address; the running-scheduler path (127.0.0.1) is "
        "Testing/cohort/test_batch_dask.py::test_second_client_on_a_running_scheduler",
    "dask worker tcp://10.0.0.1:8786 --nworkers 4 --nthreads 1 --memory-limit 24GB":
        "a worker of that cluster (see the scheduler line)",
    "deepseg batch --model totalseg-organs --inputs cohort.csv --output-dir /shared/out --scheduler "
    "tcp://10.0.0.1:8786 --threads-per-worker 8":
        "needs that cluster and the TotalSegmentator archive (GitHub, unreachable here); the same command on a "
        "local scheduler is Testing/cohort/test_batch_dask.py::test_second_client_on_a_running_scheduler",
    "from dask_jobqueue import SLURMCluster":
        "needs a SLURM cluster and dask-jobqueue, which is not a DeepSeg dependency",
    "import glob":
        "needs 3D Slicer's Python (the slicer module); the same loop runs headless on the MRML bridge in "
        "Testing/bridge/test_segment_task.py::test_console_batch_loop_over_a_folder",
}


def readme_examples(text: str) -> list[tuple[str, str]]:
    """``(language, unit)`` for every bash command and every Python block of the README."""
    units = []
    for match in re.finditer(r"^( *)```(bash|python)\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL):
        code = textwrap.dedent(match.group(3))
        if match.group(2) == "python":
            units.append(("python", code))
            continue
        for command in code.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                units.append(("bash", re.sub(r"\s+", " ", command)))
    return units


def _key(language: str, unit: str) -> str:
    return unit.splitlines()[0] if language == "python" else unit


def test_every_example_is_accounted_for():
    keys = [_key(lang, unit) for lang, unit in readme_examples(README.read_text())]
    unknown = [k for k in keys if k not in COMMANDS and k not in PYTHON and k not in NOT_RUN]
    assert not unknown, f"README examples neither run nor listed with a reason in {__file__}: {unknown}"
    stale = [k for k in [*COMMANDS, *PYTHON, *NOT_RUN] if k not in keys]
    assert not stale, f"listed here but no longer in the README: {stale}"
    assert all(NOT_RUN.values())


def _reduced(command: str, values: dict[str, str]) -> str:
    """The command with its ``[optional]`` parts left out and its placeholders filled in."""
    text = re.sub(r"\s*\[[^\]]*\]", "", command)
    for placeholder, value in COMMANDS[command].items():
        if placeholder != CWD:
            text = re.sub(rf"\b{placeholder}\b", value.format(**values), text)
    return text


@pytest.fixture(scope="module")
def session(shared, tmp_path_factory):
    """A working folder as the README assumes: ``ct.nii.gz`` (the TotalSegmentator CT DICOM series, so a
    segmentation of it can be exported against that series; in ``small/`` the small TotalSegmentator CT),
    the archive in ``~/Downloads``, an empty model store, and the ``deepseg`` command of this environment
    on PATH."""
    sys.path.insert(0, str(REPO / "Testing" / "fixtures"))
    from make_nnunet_model import ensure_nnunet_fixture, pack_results_zip

    from deepseg.io import read_volume, write_volume

    root = tmp_path_factory.mktemp("readme")
    work, home = root / "work", root / "home"
    (home / "Downloads").mkdir(parents=True)
    work.mkdir()
    pack_results_zip(ensure_nnunet_fixture(REPO / "Testing" / "_fixtures"), home / "Downloads" / f"{ARCHIVE}.zip",
                     configurations=["3d_fullres"])
    dicom = shared / "data" / "totalseg" / "example_ct_dicom_uids"
    write_volume(read_volume(dicom), work / "ct.nii.gz")
    (work / "small").mkdir()
    shutil.copy(shared / "data" / "totalseg" / "example_ct_sm.nii.gz", work / "small" / "ct.nii.gz")
    env = dict(os.environ, HOME=str(home), DEEPSEG_HOME=str(root / "store"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    values = {"model": str(save_tiny_model(root / "model", structure="liver", patch=64)), "dicom": str(dicom)}
    return work, env, values


def test_command_line_examples_run(session):
    work, env, values = session
    assert shutil.which("deepseg", path=env["PATH"]), "the deepseg command is not installed in this environment"
    ran = []
    for language, command in readme_examples(README.read_text()):
        if language != "bash" or command not in COMMANDS:
            continue
        for folder in COMMANDS[command].get(CWD, ("",)):  # the small CT where the full one takes minutes
            proc = subprocess.run(_reduced(command, values), shell=True, cwd=work / folder, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{_reduced(command, values)}\n{proc.stdout}\n{proc.stderr}"
        ran.append(command.split(" --")[0])
    assert len(ran) == len(COMMANDS)
    assert {"case.seg.nrrd", "case.json", "seg.dcm"} <= {p.name for p in work.iterdir()}
    assert {"case.seg.nrrd", "heat.nii.gz", "table.csv"} <= {p.name for p in (work / "small").iterdir()}


def test_python_examples_run(session):
    work, env, values = session
    work = work / "python"  # its own folder (it writes case.seg.nrrd too), with the small CT
    work.mkdir()
    shutil.copy(work.parent / "small" / "ct.nii.gz", work / "ct.nii.gz")
    for language, code in readme_examples(README.read_text()):
        if language != "python" or _key(language, code) not in PYTHON:
            continue
        code = code.replace(PYTHON[_key(language, code)], values["model"])
        proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=dict(env, PYTHONUNBUFFERED="1"),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{code}\n{proc.stderr}"
