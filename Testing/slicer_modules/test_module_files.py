"""Static and import checks of the four Slicer modules, runnable without Slicer's GUI:

* every ``self.ui.<name>`` the widget code uses exists in the module's .ui file with the class its
  name promises (``*ComboBox`` -> QComboBox, ``*Selector`` -> qMRMLNodeComboBox, ...);
* (the parameter-node bindings are checked against Slicer's GUI-connector rules in test_ui_bindings.py);
* each module file imports and registers (title, category, help, acknowledgement) when ``qt`` is
  absent, with only the widget class missing.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "DeepSegExtension"
MODULES = ["DeepSegOAR", "DeepSegTumor", "DeepSegExplain", "DeepSegVolumetry"]

CLASS_BY_SUFFIX = [  # (name suffix, Qt class); first match wins
    ("segmentSelector", "qMRMLSegmentSelectorWidget"), ("CollapsibleButton", "ctkCollapsibleButton"),
    ("Selector", "qMRMLNodeComboBox"), ("ComboBox", "QComboBox"), ("Button", "QPushButton"),
    ("CheckBox", "QCheckBox"), ("Label", "QLabel"), ("SpinBox", "QDoubleSpinBox"), ("Slider", "ctkSliderWidget"),
    ("List", "QListWidget"), ("progressBar", "QProgressBar"), ("TextEdit", "QPlainTextEdit"),
]


def expected_class(name: str) -> str:
    base = name.rstrip("0123456789")
    for suffix, cls in CLASS_BY_SUFFIX:
        if base.endswith(suffix):
            return cls
    raise AssertionError(f"widget name {name!r} does not say what it is (no known suffix)")


def ui_widgets(module: str) -> dict[str, ET.Element]:
    tree = ET.parse(EXTENSION / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name"): w for w in tree.iter("widget")}


def ui_names(tree: ast.AST) -> set[str]:
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}


def base_names(cls: ast.ClassDef) -> list[str]:
    return [b.id for b in cls.bases if isinstance(b, ast.Name)]


def used_ui_names(module: str) -> set[str]:
    """``self.ui`` names of the module's Widget.py and of the shared panel base classes it inherits."""
    tree = ast.parse((EXTENSION / module / f"{module}Lib" / "Widget.py").read_text())
    shared = {c.name: c for c in ast.parse((EXTENSION / "deepseg_slicer" / "panel.py").read_text()).body
              if isinstance(c, ast.ClassDef)}
    names = ui_names(tree)
    bases = [b for c in tree.body if isinstance(c, ast.ClassDef) for b in base_names(c)]
    while bases:
        base = shared.get(bases.pop())
        if base is not None:
            names |= ui_names(base)
            bases += base_names(base)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_widget_code_names_exist_in_ui_with_expected_class(module):
    widgets = ui_widgets(module)
    used = used_ui_names(module)
    assert used, "the widget code uses no self.ui names?"
    missing = sorted(used - set(widgets))
    assert not missing, f"{module}.ui lacks {missing}"
    wrong = {n: (widgets[n].get("class"), expected_class(n)) for n in used if widgets[n].get("class") != expected_class(n)}
    assert not wrong, f"{module}: (ui class, expected) {wrong}"


IMPORT_SCRIPT = """
import importlib, json, sys, types
sys.modules["qt"] = None  # no Qt: importing it raises ImportError
module = sys.argv[1]
sys.path.insert(0, sys.argv[2])
mod = importlib.import_module(module)
parent = types.SimpleNamespace()
getattr(mod, module)(parent)
logic = getattr(mod, module + "Logic")
print(json.dumps({"title": parent.title, "categories": parent.categories, "help": parent.helpText,
                  "ack": parent.acknowledgementText, "widget": hasattr(mod, module + "Widget"),
                  "test": hasattr(mod, module + "Test"), "logic": logic.__name__}))
"""


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_and_registers_without_qt(module, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", "")] if p))
    out = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, module, str(EXTENSION / module)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["categories"] == ["Segmentation"] and info["title"].startswith("DeepSeg")
    assert len(info["help"]) > 300 and "Not for clinical use" in info["help"] and info["ack"]
    assert info["widget"] is False and info["test"] is True and info["logic"] == module + "Logic"
    # the help text describes every panel control the module connects to its parameters
    assert "<b>Apply</b>" in info["help"] or "<b>Compute" in info["help"]


def test_extension_description_and_cmake_list_every_module():
    root = EXTENSION.parent
    description = json.loads((root / "DeepSeg.json").read_text())
    assert description["category"] == "Segmentation" and "PyTorch" in description["build_dependencies"]
    top = (root / "CMakeLists.txt").read_text()
    for module in MODULES:
        assert f"add_subdirectory(DeepSegExtension/{module})" in top
        cmake = (EXTENSION / module / "CMakeLists.txt").read_text()
        for path in (EXTENSION / module).rglob("*.py"):
            rel = path.relative_to(EXTENSION / module).as_posix().replace(module, "${MODULE_NAME}")
            assert rel in cmake, f"{module}/CMakeLists.txt does not install {rel}"
        assert (EXTENSION / module / "Resources" / "Icons" / f"{module}.png").is_file()


@pytest.mark.parametrize("path", sorted(str(p.relative_to(EXTENSION)) for p in EXTENSION.glob("DeepSeg*/DeepSeg*Lib/*.py")))
def test_gui_only_files_compile(path):
    """Widget and plugin files need Slicer's Qt to import; here at least they must compile."""
    compile((EXTENSION / path).read_text(), path, "exec")


@pytest.mark.parametrize("module", MODULES)
def test_panels_reload_their_packages(module):
    """Every panel inherits ParameterNodeWidget, whose onReload also re-reads ``<module>Lib`` and
    ``deepseg_slicer`` (Slicer's Reload re-runs only the module file)."""
    tree = ast.parse((EXTENSION / module / f"{module}Lib" / "Widget.py").read_text())
    shared = {c.name: c for c in ast.parse((EXTENSION / "deepseg_slicer" / "panel.py").read_text()).body
              if isinstance(c, ast.ClassDef)}
    bases = [b for c in tree.body if isinstance(c, ast.ClassDef) and c.name == f"{module}Widget" for b in base_names(c)]
    chain = set(bases)
    while bases:
        base = shared.get(bases.pop())
        if base is not None:
            chain.add(base.name)
            bases += base_names(base)
    assert "ParameterNodeWidget" in chain
    reload = next(f for f in shared["ParameterNodeWidget"].body if isinstance(f, ast.FunctionDef) and f.name == "onReload")
    assert 'forget_packages(f"{self.moduleName}Lib", "deepseg_slicer")' in ast.unparse(reload).replace("'", '"')
