"""Qt pieces shared by the four panels (GUI only; imported by the modules' Widget classes):

* ``ParameterNodeWidget``: the scripted-module widget lifecycle every panel follows (.ui loading,
  scene-close observers, enter/exit/cleanup, parameter node <-> GUI connection), written once;
* ``ModelPanelWidget``: adds the model and device selectors and the run controls of the panels
  that run a model (OAR, Tumor, Explain);
* ``RunControls``: Apply turns into Cancel while a task runs, a progress bar with the stage text,
  a collapsible log, and a timer that pumps the task's process output on the GUI thread;
* ``ensure_dependencies``: the first-use dependency check with a confirmation dialog;
* ``fill_model_combo`` / ``fill_device_combo``: the model and device selectors;
* ``fetch_model_task``: download a catalog model in the background after asking;
* ``confirm_replace`` / ``show_segmentation``: asking before replacing a result, showing a result.
"""
from __future__ import annotations

from typing import Callable, Optional

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .compat import _, forget_packages
from .progress_lines import ProgressEvent


class ParameterNodeWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Slicer's scripted-module widget template, once for the four panels.

    A panel's ``setup`` calls ``setupPanel(logic)`` (loads ``Resources/UI/<module>.ui`` into
    ``self.ui``), connects its own widgets and ends with ``initializeParameterNode()``.  Widgets with
    a ``SlicerParameterName`` property in the .ui file follow the parameter node (``connectGui``);
    ``_checkCanApply`` runs whenever the node changes and is where a panel updates its buttons.
    """

    #: parameter name -> MRML class: an empty node parameter gets the scene's first node of that class
    defaultNodes: dict = {}

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.run: Optional[RunControls] = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setupPanel(self, logic) -> None:
        """Load the module's .ui file, give its MRML widgets the scene, observe scene closing."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def onReload(self) -> None:
        """Reload also the module's ``<module>Lib`` package and ``deepseg_slicer`` (Slicer's own
        Reload re-runs only the module file, so edits there would otherwise need a restart)."""
        forget_packages(f"{self.moduleName}Lib", "deepseg_slicer")
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self) -> None:
        if self.run is not None:
            self.run.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        for name, nodeClass in self.defaultNodes.items():
            if not getattr(self._parameterNode, name):
                setattr(self._parameterNode, name, slicer.mrmlScene.GetFirstNodeByClass(nodeClass))

    def setParameterNode(self, inputParameterNode) -> None:
        """Connect the panel to ``inputParameterNode`` (a parameterNodeWrapper object, or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Update the panel from the parameter node (which buttons are enabled, what is shown)."""


class ModelPanelWidget(ParameterNodeWidget):
    """A panel that runs a catalog model: ``self.ui.modelComboBox`` and ``self.ui.deviceComboBox``
    edit the parameters ``model`` and ``device``; ``self.run`` drives Apply/Cancel.
    Apply checks the dependencies and ``confirmStart``, starts ``startTask`` in the background, and
    a successful run's result goes to ``showResult``."""

    #: shown (with the reason) when ``startTask`` raises
    startFailedText = _("Could not start the segmentation.")

    def __init__(self, parent=None) -> None:
        ParameterNodeWidget.__init__(self, parent)
        self._choices = []

    def setupPanel(self, logic, applyText: str) -> None:
        """``ParameterNodeWidget.setupPanel``, then the run controls and the model and device selectors."""
        ParameterNodeWidget.setupPanel(self, logic)
        self.run = RunControls(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.ui.logTextEdit,
                               applyText=applyText)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.applyButton.connect("clicked()", self.onApply)
        fill_device_combo(self.ui.deviceComboBox)

    def refreshModels(self) -> None:
        """Re-read the catalog (after an install, say) and refill the model selector."""
        self._choices = load_models(self.logic)
        fill_model_combo(self.ui.modelComboBox, self._choices, self._parameterNode.model if self._parameterNode else "")
        self.onModelChanged()

    def _currentChoice(self):
        model_id = self.ui.modelComboBox.currentData
        return next((c for c in self._choices if c.id == model_id), None)

    def onModelChanged(self, index=None) -> None:
        """Show the selected model and store it in the parameter node (panel-specific)."""
        raise NotImplementedError

    def onDeviceChanged(self, index=None) -> None:
        self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    def onFetchModel(self) -> None:
        task = fetch_model_task(self._currentChoice(), self.run, on_success=lambda result: self.refreshModels())
        if task is not None:
            self.run.track(task)

    def onApply(self) -> None:
        if self.run.running:
            self.run.cancel()
            return
        if not ensure_dependencies(self.run.log) or not self.confirmStart():
            return
        self.run.prepare()
        with slicer.util.tryWithErrorDisplay(self.startFailedText, waitCursor=True):
            self.run.track(self.startTask())
        self.run.reset()

    def confirmStart(self) -> bool:
        """Last checks and questions before a run; False stops it."""
        return True

    def startTask(self):
        """Start the panel's run with ``onProgress=self.run.progress, onLog=self.run.log,
        onDone=self.onDone`` and return the task (panel-specific)."""
        raise NotImplementedError

    def onDone(self, task) -> None:
        self.run.done(task, on_success=self.showResult)

    def showResult(self, result) -> None:
        """Put a successful run's result in the parameter node and the views (panel-specific)."""
        raise NotImplementedError


class RunControls:
    """Binds a task (``tasks.CliTask``) to an Apply button, progress bar, status label and log."""

    def __init__(self, applyButton, progressBar, statusLabel, logBox, *, applyText: str) -> None:
        self.applyButton, self.progressBar, self.statusLabel, self.logBox = applyButton, progressBar, statusLabel, logBox
        self.applyText = applyText
        self.task = None
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self._pump)
        self.progressBar.hide()

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def prepare(self) -> None:
        """Reset the log and show a busy bar before the logic starts a task."""
        self.logBox.clear()
        self.progressBar.setRange(0, 0)
        self.progressBar.show()
        self.statusLabel.text = _("Starting...")

    def reset(self) -> None:
        """Back to idle when a task could not even start (the error was shown already)."""
        if not self.running:
            self.progressBar.hide()
            self.statusLabel.text = ""
            self.applyButton.text = self.applyText

    def track(self, task) -> None:
        """Follow a started task (created with this object's ``progress``/``log`` callbacks)."""
        self.task = task
        self.applyButton.text = _("Cancel")
        self.timer.start()

    def cancel(self) -> None:
        if self.running:
            self.statusLabel.text = _("Cancelling...")
            slicer.app.processEvents()
            self.task.cancel()

    def progress(self, event: ProgressEvent) -> None:
        if event.fraction is None:
            self.progressBar.setRange(0, 0)  # busy indicator while the stage length is unknown
        else:
            self.progressBar.setRange(0, 100)
            self.progressBar.value = int(round(100 * event.fraction))
        self.statusLabel.text = event.text

    def log(self, line: str) -> None:
        self.logBox.appendPlainText(line)

    def done(self, task, on_success: Optional[Callable] = None) -> None:
        """Call from the task's ``on_done``: restore Apply, report, and hand over the result."""
        self.timer.stop()
        self.progressBar.hide()
        self.applyButton.text = self.applyText
        if task.error is None:
            self.statusLabel.text = _("Done.")
            if on_success:
                on_success(task.result)
        elif task.job is not None and task.job.state == "cancelled":
            self.statusLabel.text = _("Cancelled; nothing was added to the scene.")
        else:
            self.statusLabel.text = _("Failed: see the details below.")
            slicer.util.errorDisplay(str(task.error), windowTitle=_("DeepSeg"))

    def _pump(self) -> None:
        if self.task is not None:
            self.task.process_events()


def ensure_dependencies(log: Optional[Callable[[str], None]] = None) -> bool:
    """Check torch and Resources/requirements.txt; ask before installing anything."""
    from deepseg.resources import resource_path

    from . import dependencies

    with slicer.util.tryWithErrorDisplay(_("Installing DeepSeg's Python packages failed."), waitCursor=True):
        return dependencies.ensure(
            resource_path("requirements.txt"), confirm=lambda text: slicer.util.confirmOkCancelDisplay(text, windowTitle=_("DeepSeg")),
            install_packages=slicer.util.pip_install, install_torch=dependencies.install_torch_in_slicer, log=log)
    return False


def fill_model_combo(combo, choices, current: str = "") -> None:
    """Model selector: item text = title (+ "not installed"), item data = catalog id."""
    was_blocked = combo.blockSignals(True)
    combo.clear()
    for choice in choices:
        suffix = "" if choice.installed else _(" (not installed)")
        combo.addItem(choice.title + suffix, choice.id)
    index = combo.findData(current)
    combo.setCurrentIndex(index if index >= 0 else 0)
    combo.blockSignals(was_blocked)


def fill_device_combo(combo, current: str = "auto") -> None:
    """Device selector: auto, CPU and each detected GPU with its memory."""
    was_blocked = combo.blockSignals(True)
    combo.clear()
    combo.addItem(_("Auto (GPU if available)"), "auto")
    try:
        from deepseg.inference.device import describe_devices

        devices = describe_devices()
    except ImportError:  # torch not installed yet
        devices = [{"device": "cpu", "name": "CPU", "memory_gb": None}]
    for d in devices:
        memory = f", {d['memory_gb']} GB" if d.get("memory_gb") else ""
        combo.addItem(f"{d['name']}{memory}", d["device"])
    index = combo.findData(current)
    combo.setCurrentIndex(index if index >= 0 else 0)
    combo.blockSignals(was_blocked)


def fetch_model_task(choice, run: RunControls, on_success: Optional[Callable] = None):
    """Ask, then run ``deepseg models fetch <id>`` in the background; None when declined."""
    from .tasks import CommandTask

    if choice is None:
        return None
    size = f"{choice.download_bytes / 2**20:.0f} MB" if choice.download_bytes else _("unknown size")
    question = _("Download the model '{title}' ({size})?\n\nLicence: {licence} (commercial use: {use}).\n"
                 "Please cite: {citation}").format(title=choice.title, size=size, licence=choice.license,
                                                   use=choice.commercial_use, citation=choice.citation)
    if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("DeepSeg")):
        return None
    run.prepare()
    task = CommandTask("models", ["fetch", choice.id, "--progress", "lines"], on_progress=run.progress, on_log=run.log,
                       on_done=lambda t: run.done(t, on_success=on_success))
    return task.start()


def confirm_replace(node) -> bool:
    """True when ``node`` is empty/None or the user agrees to replace its segments."""
    if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
        return True
    return slicer.util.confirmYesNoDisplay(
        _("Replace the {n} segment(s) of '{name}' with the new result?").format(
            n=node.GetSegmentation().GetNumberOfSegments(), name=node.GetName()), windowTitle=_("DeepSeg"))


def show_segmentation(segmentationNode, volumeNode, in3D: bool) -> None:
    """Show the input in the slice views and the result over it (and as surfaces in 3D)."""
    slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
    segmentationNode.GetDisplayNode().SetVisibility(True)
    if in3D:
        segmentationNode.CreateClosedSurfaceRepresentation()


def load_models(logic) -> list:
    """The logic's model choices; when reading the catalog needs a package that is missing, offer
    to install the dependencies first (once), else return no models."""
    try:
        return logic.models()
    except ImportError:
        if ensure_dependencies():
            return logic.models()
        return []
