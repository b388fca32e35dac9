"""Conformance of every ``.ui`` binding (``SlicerParameterName``) with the rules of Slicer's real GUI
connectors, so that ``connectGui`` in a panel's ``setup()`` cannot raise inside Slicer.

The rules are read from Slicer's source, Slicer/Slicer at commit
583e9b37d50ead7daf7b783dce465ccaecec8809 (2026-08-21):

* ``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py``: ``createGuiConnector`` takes the first
  registered connector whose ``canRepresent(widget, datatype)`` holds -- an *exact* widget class
  (``type(widget) in (...)``) times the unannotated parameter type -- and raises ``RuntimeError`` when
  none does; ``create``/``__init__`` then raise when a combo box bound to int/float/str/bool has no
  ``Choice`` ("ComboBoxToStringableConnector requires the Choice annotation to be used."), when a
  ``QSlider``, ``ctkSliderWidget`` or ``qMRMLSliderWidget`` is bound to an unbounded number (neither
  ``WithinRange`` nor ``Minimum`` + ``Maximum``), or a range widget has no ``RangeBounds``.  The numeric
  connectors overwrite the widget's minimum/maximum with the annotation's bounds (-inf/+inf when
  absent) and the node connector overwrites ``nodeTypes`` with the annotation's node classes; the
  combo-box connector clears the items, adds ``str(choice)`` for each choice and ``write`` raises
  ``ValueError`` for a value not among the choices;
* ``wrapper.py``: ``_checkParamName`` raises ``ValueError`` for a ``SlicerParameterName`` that is not a
  parameter; ``_processClass`` raises for a parameter whose name Slicer reserves (``checkedSetAttr``),
  and ``_initMethod`` sets ``parameterNode`` and the GUI bookkeeping attributes on the instance;
* ``serializers.py`` / ``validators.py``: every value written, the default included (``_Parameter.read``
  writes it), passes the ``Choice``/``WithinRange``/``Minimum``/``Maximum`` validators.

Where DeepSeg adds a stricter rule of its own (bounds for every number, the ``.ui`` stating the same
range and node classes the connector will impose), the assertion message says so.
"""
from __future__ import annotations

import enum
import importlib
import math
import pathlib
import typing
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML classes for node parameters) is not installed")
if not hasattr(slicer, "vtkMRMLNode"):
    pytest.skip("the 'slicer' module found has no MRML (install slicer-core)", allow_module_level=True)

from deepseg_slicer.compat import Choice, WithinRange  # noqa: E402  (Slicer's own classes inside Slicer)

EXTENSION = Path(__file__).resolve().parents[2] / "DeepSegExtension"
MODULES = ["DeepSegOAR", "DeepSegTumor", "DeepSegExplain", "DeepSegVolumetry"]
PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
              pathlib.PureWindowsPath)
# wrapper.py: attributes _processClass adds (checkedSetAttr raises if a parameter has the name) and the
# instance attributes _initMethod sets
RESERVED_NAMES = {"allParameters", "_is_parameter_node_wrapper", "default", "isCached", "dataType", "getValue",
                  "setValue", "connectGui", "connectParametersToGui", "disconnectGui", "StartModify", "EndModify",
                  "AddObserver", "RemoveObserver", "Modified", "parameterNode", "_parameterGUIs",
                  "_nextParameterGUIsTag", "_guiVtkObserverTags", "_updatingGUIFromParameterNode"}


def split(datatype) -> tuple[object, tuple]:
    """util.splitAnnotations: (unannotated type, annotations)."""
    if typing.get_origin(datatype) is Annotated:
        base, *annotations = typing.get_args(datatype)
        return base, tuple(annotations)
    return datatype, ()


def first(annotations, name: str):
    """util.findFirstAnnotation, by Slicer's validator class name."""
    return next((a for a in annotations if type(a).__name__ == name), None)


def is_node_type(kind) -> bool:
    """util.isNodeOrUnionOfNodes."""
    if isinstance(kind, type):
        return issubclass(kind, slicer.vtkMRMLNode)
    if typing.get_origin(kind) is typing.Union:
        return all(a is type(None) or (isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode))
                   for a in (split(a)[0] for a in typing.get_args(kind)))
    return False


def node_types(kind) -> list[str]:
    """util.getNodeTypes: the class names the node connector sets as the combo box's ``nodeTypes``."""
    kinds = [kind] if isinstance(kind, type) else [split(a)[0] for a in typing.get_args(kind)]
    return [k().GetClassName() for k in kinds if isinstance(k, type) and issubclass(k, slicer.vtkMRMLNode)]


def bounds(annotations) -> tuple[float, float]:
    """What the numeric connectors set as the widget's range (guiConnectors.py, __init__)."""
    within = first(annotations, "WithinRange")
    if within is not None:
        return within.minimum, within.maximum
    low, high = first(annotations, "Minimum"), first(annotations, "Maximum")
    return (low.minimum if low else -math.inf), (high.maximum if high else math.inf)


def is_bounded(annotations) -> bool:
    return first(annotations, "WithinRange") is not None or (
        first(annotations, "Minimum") is not None and first(annotations, "Maximum") is not None)


@dataclass
class Connector:
    """One registered GUI connector: exact widget classes x a test on the unannotated type, and the
    annotation the connector's ``create``/``__init__`` insists on (``needs`` -> Slicer's message)."""

    name: str
    widgets: set[str]
    represents: Callable[[object], bool]
    needs: Callable[[str, tuple], str] = field(default=lambda widget, annotations: "")


def _choice_needed(widget, annotations) -> str:
    if first(annotations, "Choice") is None:
        return "ComboBoxToStringableConnector requires the Choice annotation to be used."
    return ""


def _bounded_for(*classes: str):
    def check(widget, annotations) -> str:
        if widget in classes and not is_bounded(annotations):
            return f"Cannot have a connection to {widget} where the number type is unbounded."
        return ""
    return check


def _range_bounds(widget, annotations) -> str:
    if first(annotations, "RangeBounds") is None:
        return "Cannot have a connection to a range widget where the float is unbounded. Add a RangeBounds annotation."
    return ""


# guiConnectors.py, in registration order (createGuiConnector takes the first that can represent)
CONNECTORS = [
    Connector("QCheckBoxToBoolConnector", {"QCheckBox", "ctkCheckBox"}, lambda t: t == bool),
    Connector("QCheckablePushButtonToBoolConnector", {"QPushButton"}, lambda t: t == bool),
    Connector("ctkCheckablePushButtonToBoolConnector", {"ctkCheckablePushButton"}, lambda t: t == bool),
    Connector("QSliderOrSpinBoxToIntConnector", {"QSlider", "QSpinBox"}, lambda t: t == int, _bounded_for("QSlider")),
    Connector("QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
              {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
               "qMRMLSpinBox"}, lambda t: t in (float, int), _bounded_for("ctkSliderWidget", "qMRMLSliderWidget")),
    Connector("QComboBoxToStringableConnector", {"QComboBox", "ctkComboBox"}, lambda t: t in (int, float, str, bool),
              _choice_needed),
    Connector("QComboBoxToEnumConnector", {"QComboBox", "ctkComboBox"},
              lambda t: isinstance(t, type) and issubclass(t, enum.Enum)),
    Connector("QLineEditToStrConnector", {"QLineEdit"}, lambda t: t == str),
    Connector("QLabelToStrConnector", {"QLabel"}, lambda t: t == str),
    Connector("QTextEditPlainTextToStrConnector", {"QTextEdit"}, lambda t: t == str),
    Connector("ctkRangeWidgetToRangeConnector", {"ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"},
              lambda t: getattr(t, "__name__", "") == "FloatRange", _range_bounds),
    Connector("ctkPathLineEditToPathConnector", {"ctkPathLineEdit"}, lambda t: t in PATH_TYPES),
    Connector("ctkDirectoryButtonToPathConnector", {"ctkDirectoryButton"}, lambda t: t in PATH_TYPES),
    Connector("qMRMLNodeComboBoxToNodeConnector", {"qMRMLNodeComboBox"}, is_node_type),
    Connector("ctkColorPickerButtonToQColorConnector", {"ctkColorPickerButton"},
              lambda t: getattr(t, "__name__", "") == "QColor"),
]
NUMERIC = {"QSliderOrSpinBoxToIntConnector", "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector"}


def connect(widget_class: str, datatype, default) -> Connector:
    """What ``createGuiConnector`` + ``connector.write(default)`` do in Slicer; raises as Slicer raises."""
    kind, annotations = split(datatype)
    for connector in CONNECTORS:
        if widget_class in connector.widgets and connector.represents(kind):
            problem = connector.needs(widget_class, annotations)
            if problem:
                raise RuntimeError(problem)
            for validator in annotations:  # serializers.ValidatedSerializer.write(default)
                if hasattr(validator, "validate"):
                    validator.validate(default)
            choice = first(annotations, "Choice")
            if choice is not None and default not in choice.choices:  # QComboBoxToStringableConnector.write
                raise ValueError(f"Unable to find value {default} in choices {choice.choices}")
            return connector
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{widget_class}'.")


def ui_bindings(module: str) -> list[tuple[ET.Element, str]]:
    tree = ET.parse(EXTENSION / module / "Resources" / "UI" / f"{module}.ui")
    out = []
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{widget.get('name')}: SlicerParameterName must be a dynamic property"
                out.append((widget, prop.findtext("string")))
    return out


def ui_property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop[0]
            if value.tag == "stringlist":
                return [s.text for s in value.findall("string")]
            return float(value.text) if value.tag in ("double", "number") else value.text
    return None


def parameter_class(module: str, monkeypatch):
    monkeypatch.syspath_prepend(str(EXTENSION / module))
    mod = importlib.import_module(f"{module}Lib.Parameters")
    return getattr(mod, f"{module}ParameterNode")


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_binding_connects_as_in_slicer(module, monkeypatch):
    cls = parameter_class(module, monkeypatch)
    params = cls(slicer.vtkMRMLScriptedModuleNode())  # unset parameters read as their (validated) defaults
    bindings = ui_bindings(module)
    assert bindings, f"{module}.ui binds no widget to the parameter node"
    assert not RESERVED_NAMES & set(cls.allParameters), "parameter names Slicer's wrapper reserves"
    for widget, name in bindings:
        where = f"{module}.ui {widget.get('name')} ({widget.get('class')}) -> {name}"
        assert name in cls.allParameters, f"{where}: Cannot find a param with the given name (wrapper._checkParamName)"
        datatype = cls.dataType(name)
        try:
            connector = connect(widget.get("class"), datatype, getattr(params, name))
        except (RuntimeError, ValueError) as error:
            raise AssertionError(f"{where}: Slicer's connectGui raises: {error}") from None
        kind, annotations = split(datatype)
        if connector.name in NUMERIC:
            assert is_bounded(annotations), (
                f"{where}: DeepSeg rule: bound every number (WithinRange), else Slicer sets the widget's range to "
                "(-inf, inf) and any value can be typed")
            ui_range = (ui_property(widget, "minimum") or 0.0, ui_property(widget, "maximum"))
            assert ui_range == bounds(annotations), (
                f"{where}: the .ui range {ui_range} is replaced by the annotation's {bounds(annotations)} in Slicer; "
                "DeepSeg rule: state the same range in both")
        if connector.name == "qMRMLNodeComboBoxToNodeConnector":
            assert ui_property(widget, "nodeTypes") == node_types(kind), (
                f"{where}: Slicer sets nodeTypes to {node_types(kind)}; DeepSeg rule: the .ui says the same")


@pytest.mark.parametrize("module", MODULES)
def test_mrml_widgets_get_the_scene(module):
    """qMRML widgets need ``setMRMLScene`` (the panel calls it on the top-level widget, which signals it on)."""
    path = EXTENSION / module / "Resources" / "UI" / f"{module}.ui"
    root = ET.parse(path).getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {n for n, w in widgets.items() if w.get("class", "").startswith("qMRML") and n != module}
    assert mrml == receivers, f"{module}: MRML widgets without scene connection: {mrml - receivers}"


class _Mode(enum.Enum):
    A = 1


@pytest.mark.parametrize("widget, datatype, default, message", [
    ("QComboBox", str, "a", "requires the Choice annotation"),
    ("QComboBox", Annotated[str, Choice(("a", "b"))], "c", "must be in one of the following"),
    ("ctkSliderWidget", float, 0.5, "unbounded"),
    ("QSlider", int, 1, "unbounded"),
    ("ctkSliderWidget", Annotated[float, WithinRange(0.0, 1.0)], 2.0, "within range"),
    ("QLineEdit", bool, False, "Unable to create GUI connector"),
    ("QCheckBox", str, "", "Unable to create GUI connector"),
    ("qMRMLNodeComboBox", str, "", "Unable to create GUI connector"),
    ("QDoubleSpinBox", str, "", "Unable to create GUI connector"),
])
def test_rules_reject_what_slicer_rejects(widget, datatype, default, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        connect(widget, datatype, default)


@pytest.mark.parametrize("widget, datatype, default, expected", [
    ("QComboBox", Annotated[str, Choice(("a", "b"))], "b", "QComboBoxToStringableConnector"),
    ("QComboBox", _Mode, _Mode.A, "QComboBoxToEnumConnector"),
    ("QDoubleSpinBox", float, 1.0, "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector"),
    ("qMRMLNodeComboBox", typing.Optional[slicer.vtkMRMLScalarVolumeNode], None, "qMRMLNodeComboBoxToNodeConnector"),
    ("QCheckBox", bool, True, "QCheckBoxToBoolConnector"),
])
def test_rules_accept_what_slicer_accepts(widget, datatype, default, expected):
    assert connect(widget, datatype, default).name == expected


@pytest.mark.skipif(slicer.__dict__.get("app") is not None, reason="exercises the headless stand-in")
def test_headless_wrapper_validates_like_slicer(monkeypatch):
    """Slicer's serializers validate every write (ValidatedSerializer.write); so does the stand-in."""
    cls = parameter_class("DeepSegExplain", monkeypatch)
    p = cls(slicer.vtkMRMLScriptedModuleNode())
    assert (p.method, p.overlay, p.colormap) == ("gradcam", "heat map", "Inferno")
    p.method = "hirescam"
    assert p.method == "hirescam"
    with pytest.raises(ValueError, match="must be in one of the following"):
        p.method = "saliency"
    with pytest.raises(ValueError, match="within range"):
        p.opacity = 1.5
    assert (p.method, p.opacity) == ("hirescam", 0.5)


@pytest.mark.parametrize("name", ["connectGui", "default", "dataType", "Modified"])
def test_wrapper_refuses_reserved_names(name):
    """wrapper._processClass: ValueError for a parameter named like what the wrapper adds (both wrappers)."""
    from deepseg_slicer.compat import parameterNodeWrapper

    with pytest.raises(ValueError, match="reserved name"):
        parameterNodeWrapper(type("Params", (), {"__annotations__": {name: bool}, name: False}))
