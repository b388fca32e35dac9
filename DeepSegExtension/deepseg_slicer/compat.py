"""Slicer's scripted-module API for the DeepSeg modules, with small headless stand-ins when the
modules are imported outside the Slicer application (only the ``slicer-core`` MRML wheel, no Qt):
tests, trame-slicer apps and batch scripts use the module logics there.

In Slicer every name below is Slicer's own.  Headless:

* ``ScriptedLoadableModule`` stores the module description on its ``parent`` as Slicer does;
* ``ScriptedLoadableModuleLogic.getParameterNode()`` returns the module's singleton
  ``vtkMRMLScriptedModuleNode`` in the logic's scene (a real MRML node);
* ``parameterNodeWrapper`` maps annotated class attributes to that node's parameters and node
  references and, as Slicer's serializers do, validates every value written (the default included)
  against the ``Choice``/``WithinRange`` annotations; ``dataType(name)`` gives the annotated type
  (the GUI connection ``connectGui`` exists only in Slicer: Testing/slicer_modules/test_ui_bindings.py
  checks the .ui bindings against the rules of Slicer's GUI connectors);
* ``_``/``translate`` return the text unchanged.

``HAS_QT`` says whether the panels (Widget classes) can be imported; ``describe_module`` fills in
the description every DeepSeg module shares (category, contributors) in the module class;
``forget_packages`` lets the panels' Reload re-read the ``*Lib`` packages and ``deepseg_slicer``.
"""
from __future__ import annotations

import sys
import typing
import unittest

try:  # inside the Slicer application
    from slicer.i18n import tr as _  # noqa: F401
    from slicer.i18n import translate  # noqa: F401
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: F401
    from slicer.ScriptedLoadableModule import (  # noqa: F401
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    )

    IN_SLICER = True
except ImportError:
    IN_SLICER = False

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:  # noqa: ARG001
        return text

    class ScriptedLoadableModule:  # type: ignore[no-redef]
        def __init__(self, parent) -> None:
            self.parent = parent
            self.moduleName = type(self).__name__
            parent.title = self.moduleName
            parent.categories = []
            parent.dependencies = []
            parent.contributors = []
            parent.helpText = ""
            parent.acknowledgementText = ""

    class ScriptedLoadableModuleLogic:  # type: ignore[no-redef]
        def __init__(self, parent=None) -> None:  # noqa: ARG002
            name = type(self).__name__
            self.moduleName = name[:-len("Logic")] if name.endswith("Logic") else name

        def getParameterNode(self):
            scene = self.scene
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is not None and node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)  # as Slicer's: a scene close may drop it
            if node is None:
                node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
                node.UnRegister(None)
                node.SetSingletonTag(self.moduleName)
                node.SetName(scene.GenerateUniqueName(self.moduleName))
                node.SetAttribute("ModuleName", self.moduleName)
                node = scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):  # type: ignore[no-redef]
        def delayDisplay(self, message: str, msec: int = 0) -> None:  # noqa: ARG002
            print(message)

    class Choice:  # type: ignore[no-redef]
        """Slicer's ``parameterNodeWrapper.Choice`` validator: the value is one of ``choices``."""

        def __init__(self, choices) -> None:
            self.choices = choices

        def validate(self, value) -> None:
            if value not in self.choices:
                raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")

    class WithinRange:  # type: ignore[no-redef]
        """Slicer's ``parameterNodeWrapper.WithinRange`` validator: ``minimum <= value <= maximum``."""

        def __init__(self, minimum, maximum) -> None:
            self.minimum = minimum
            self.maximum = maximum

        def validate(self, value) -> None:
            if not self.minimum <= value <= self.maximum:
                raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")

    # what Slicer's wrapper adds to the class (wrapper._processClass raises for a parameter of that name)
    _RESERVED = ("allParameters", "default", "isCached", "dataType", "getValue", "setValue", "connectGui",
                 "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver",
                 "RemoveObserver", "Modified")

    def parameterNodeWrapper(cls):  # type: ignore[no-redef]
        """Headless ``parameterNodeWrapper``: typed attributes stored in a scripted module node."""
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in hints:
            if name in _RESERVED:
                raise ValueError(f"Cannot use reserved name '{name}' in a parameterNodeWrapper")

        def make_property(name: str, hint):
            kind, *annotations = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
            if typing.get_origin(kind) is typing.Union:  # Optional[Node]
                kind = next(a for a in typing.get_args(kind) if a is not type(None))
            validators = [a for a in annotations if hasattr(a, "validate")]
            default = getattr(cls, name, None)
            is_node = isinstance(kind, type) and kind.__name__.startswith("vtkMRML")

            def validate(value):
                for validator in validators:
                    validator.validate(value)
                return value

            def getter(self):
                if is_node:
                    return self.parameterNode.GetNodeReference(name)
                text = self.parameterNode.GetParameter(name)
                if text == "":
                    return validate(default)
                if kind is bool:
                    return text == "True"
                return kind(text)

            def setter(self, value):
                if is_node:
                    self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                else:
                    self.parameterNode.SetParameter(name, str(validate(value)))

            return property(getter, setter)

        namespace = {name: make_property(name, hint) for name, hint in hints.items()}

        def __init__(self, parameterNode) -> None:
            self.parameterNode = parameterNode

        namespace["__init__"] = __init__
        namespace["__doc__"] = cls.__doc__
        namespace["allParameters"] = dict(hints)
        namespace["dataType"] = staticmethod(hints.__getitem__)
        namespace["default"] = lambda self, name: getattr(cls, name, None)
        return type(cls.__name__, (), namespace)

try:
    import qt  # noqa: F401

    HAS_QT = True
except ImportError:  # headless (slicer-core only): logic, parameters and self-test, no panel
    HAS_QT = False


def describe_module(parent, title: str, helpText: str, acknowledgementText: str, dependencies=()) -> None:
    """Set what Slicer shows about a DeepSeg module (call from the module class after
    ``ScriptedLoadableModule.__init__``); every module is in the Segmentation category."""
    parent.title = title
    parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
    parent.dependencies = list(dependencies)
    parent.contributors = ["DeepSeg developers"]
    parent.helpText = helpText
    parent.acknowledgementText = acknowledgementText


def forget_packages(*names: str) -> list[str]:
    """Drop the packages ``names`` and their submodules from ``sys.modules`` (returns what was dropped),
    so that the next import reads their files again: Slicer's Reload re-runs only the module's own
    file, which then imports its ``<module>Lib`` package and ``deepseg_slicer`` afresh."""
    dropped = [m for m in list(sys.modules) if m in names or m.startswith(tuple(f"{n}." for n in names))]
    for name in dropped:
        del sys.modules[name]
    return dropped
