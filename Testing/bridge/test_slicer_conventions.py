"""Slicer conventions the modules follow, checked on slicer-core: the demo CT in the Sample Data
module (fetched through the model store when clicked), and a Reload that re-reads the ``*Lib``
packages and ``deepseg_slicer``."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import numpy as np
import pytest

from deepseg.models.store import MARKER, ModelStore
from deepseg_slicer.compat import forget_packages


def test_sample_loads_through_the_store_with_the_catalog_geometry(scene, tmp_path):
    """An installed sample is read from the store (no download) into a volume node."""
    import mrcfile

    from deepseg_slicer import mrml
    from deepseg_slicer.sampledata import load_sample

    store = ModelStore(tmp_path)
    sample = store.catalog.sample("lits-117")
    folder = tmp_path / "samples" / "lits-117"
    folder.mkdir(parents=True)
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    with mrcfile.new(folder / sample["image"]) as mrc:
        mrc.set_data(array)
    (folder / MARKER).write_text(json.dumps({"id": "lits-117", "verified": True}))
    node = load_sample("lits-117", scene, store)
    volume = mrml.volume_from_node(node)
    assert node.GetName() == "lits-117" and node.GetScene() is scene
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == tuple(sample["spacing"])


def test_sample_data_registration(monkeypatch):
    """Each catalog sample becomes a Sample Data button whose download goes through ``load_sample``."""
    from deepseg.models.catalog import load_catalog
    from deepseg_slicer.sampledata import CATEGORY, register_sample_data

    calls = []

    def register(**kw):
        """Records the call, with the invariant Slicer's SampleDataSource.__init__ enforces (SampleData.py
        at Slicer 583e9b37): uris a string (then one file) or a list as long as fileNames and nodeNames."""
        if isinstance(kw.get("uris"), str):
            assert all(not isinstance(kw.get(k), (list, tuple)) for k in ("fileNames", "nodeNames"))
        else:
            assert isinstance(kw.get("uris"), (list, tuple)), "SampleDataSource takes len(uris)"
            assert len(kw["uris"]) == len(kw["fileNames"]) == len(kw.get("nodeNames") or kw["uris"])
        calls.append(kw)

    logic = types.SimpleNamespace(registerCustomSampleDataSource=register)
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    ids = register_sample_data("icon.png")
    assert ids == list(load_catalog().samples) and "lits-117" in ids
    assert [c["sampleName"] for c in calls] == ids
    assert all(c["category"] == CATEGORY and c["thumbnailFileName"] == "icon.png" and callable(c["customDownloader"])
               for c in calls)
    assert calls[ids.index("lits-117")]["uris"] == "pypi:liver-ct-segmentation-package==1.6.0"


def test_forget_packages_makes_the_next_import_read_the_files_again(tmp_path, monkeypatch):
    package = tmp_path / "DeepSegFakeLib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "Logic.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 1
    (package / "Logic.py").write_text("VERSION = 2  # edited\n")
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 1  # cached: what Slicer's Reload leaves
    assert sorted(forget_packages("DeepSegFakeLib", "deepseg_slicer_absent")) == ["DeepSegFakeLib", "DeepSegFakeLib.Logic"]
    importlib.invalidate_caches()
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 2
    forget_packages("DeepSegFakeLib")


def test_terminology_loads_into_slicers_terminologies_logic(tmp_path):
    """The generated .term.json is read by Slicer's own Terminologies logic: the DeepSeg context with
    one Anatomical Structure category, every coded structure as a type (laterality as modifiers),
    names and distinct colours; uncoded catalogue names stay out."""
    import slicer

    from deepseg.export.terminology import catalogue
    from deepseg_slicer.terminology import CONTEXT_NAME, FILE_NAME, register_terminology

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert register_terminology(logic, tmp_path) == CONTEXT_NAME
    assert (tmp_path / FILE_NAME).is_file() and logic.IsTerminologyContextLoaded(CONTEXT_NAME)
    category = slicer.vtkSlicerTerminologyCategory()
    assert logic.GetNumberOfCategoriesInTerminology(CONTEXT_NAME) == 1
    assert logic.GetNthCategoryInTerminology(CONTEXT_NAME, 0, category)
    assert (category.GetCodeValue(), category.GetCodeMeaning()) == ("123037004", "Anatomical Structure")
    types = {}
    for i in range(logic.GetNumberOfTypesInTerminologyCategory(CONTEXT_NAME, category)):
        kind = slicer.vtkSlicerTerminologyType()
        assert logic.GetNthTypeInTerminologyCategory(CONTEXT_NAME, category, i, kind)
        modifiers = []
        for m in range(logic.GetNumberOfTypeModifiersInTerminologyType(CONTEXT_NAME, category, kind)):
            modifier = slicer.vtkSlicerTerminologyType()
            assert logic.GetNthTypeModifierInTerminologyType(CONTEXT_NAME, category, kind, m, modifier)
            modifiers.append(modifier.GetCodeMeaning())
        types[kind.GetCodeValue()] = (kind.GetCodeMeaning(), tuple(kind.GetRecommendedDisplayRGBValue()), sorted(modifiers))
    coded = {e["type"]["value"] for e in catalogue().values() if e.get("type")}
    assert coded <= set(types), coded - set(types)
    assert types["10200004"][0] == "Liver"
    assert types["64033007"][2] == ["Left", "Right"]  # kidney_left / kidney_right
    assert len({colour for _, colour, _ in types.values()}) == len(types)


FAILING_WRITE = """
import resource, signal, sys
from deepseg_slicer.terminology import register_terminology
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
register_terminology(None, sys.argv[1])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the failing write uses a POSIX file-size limit (RLIMIT_FSIZE)")
def test_a_failed_terminology_write_keeps_the_last_file(tmp_path):
    """Slicer rewrites the .term.json at every start.  A write that fails part way (here for real: the
    process may not write files over 4 KiB, the terminology is larger) must leave the last complete file
    as it was, and no temporary file; the old code truncated it and left 4 KiB of JSON."""
    from deepseg_slicer.terminology import FILE_NAME

    earlier = json.dumps({"SegmentationCategoryTypeContextName": "earlier start"})
    (tmp_path / FILE_NAME).write_text(earlier)
    run = subprocess.run([sys.executable, "-c", FAILING_WRITE, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode != 0 and "File too large" in run.stderr, run.stderr
    assert (tmp_path / FILE_NAME).read_text() == earlier
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]
