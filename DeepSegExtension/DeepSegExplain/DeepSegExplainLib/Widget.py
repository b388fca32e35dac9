"""DeepSegExplain panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from deepseg_slicer.compat import _
from deepseg_slicer.panel import (RunControls, ensure_dependencies, fill_device_combo, fill_model_combo,
                                  load_models)

from .Logic import COLORMAPS, METHODS, DeepSegExplainLogic
from .Parameters import DeepSegExplainParameterNode


class DeepSegExplainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._choices = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepSegExplain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepSegExplainLogic()
        self.run = RunControls(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.ui.logTextEdit,
                               applyText=_("Compute maps"))
        for method in METHODS:
            self.ui.methodComboBox.addItem(method)
        for name in COLORMAPS:
            self.ui.colormapComboBox.addItem(name)
        for name in ("heat map", "uncertainty"):
            self.ui.overlayComboBox.addItem(name)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.segmentSelector.setCurrentNode)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.applyButton.connect("clicked()", self.onApply)
        self.ui.toSegmentButton.connect("clicked()", self.onToSegment)

        fill_device_combo(self.ui.deviceComboBox)
        self._choices = load_models(self.logic)
        self.initializeParameterNode()
        fill_model_combo(self.ui.modelComboBox, self._choices, self._parameterNode.model)

    def cleanup(self) -> None:
        self.run.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: "DeepSegExplainParameterNode | None") -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterChanged)
            self._onParameterChanged()

    def _shownMap(self):
        p = self._parameterNode
        return p.uncertaintyVolume if p.overlay == "uncertainty" else p.heatmapVolume

    def _onParameterChanged(self, caller=None, event=None) -> None:
        """Enable buttons and keep the overlay in step with colour map, opacity and threshold."""
        p = self._parameterNode
        if not p:
            return
        if not self.run.running:
            ready = bool(p.segmentation and p.segmentId and p.inputVolume and p.model)
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = _("Compute the maps") if ready else _("Pick a segmentation, a segment, its image and the model")
        shown = self._shownMap()
        self.ui.toSegmentButton.enabled = bool(shown and p.segmentation)
        if shown and p.inputVolume:
            self.logic.showOverlay(p.inputVolume, shown, colormap=p.colormap, opacity=p.opacity, threshold=p.threshold)

    def onSegmentChanged(self, segmentId) -> None:
        self._parameterNode.segmentId = segmentId or ""
        segmentation = self._parameterNode.segmentation
        segment = segmentation.GetSegmentation().GetSegment(segmentId) if segmentation and segmentId else None
        guess = self.logic.modelFor(segment.GetName(), self._choices) if segment else None
        if guess:
            fill_model_combo(self.ui.modelComboBox, self._choices, guess)
            self.onModelChanged()

    def onModelChanged(self, index=None) -> None:
        model_id = self.ui.modelComboBox.currentData
        choice = next((c for c in self._choices if c.id == model_id), None)
        self.ui.modelInfoLabel.text = choice.summary if choice else ""
        if choice:
            self._parameterNode.model = choice.id

    def onDeviceChanged(self, index=None) -> None:
        self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    def onApply(self) -> None:
        if self.run.running:
            self.run.cancel()
            return
        if not ensure_dependencies(self.run.log):
            return
        p = self._parameterNode
        self.run.prepare()
        with slicer.util.tryWithErrorDisplay(_("Could not start the explanation."), waitCursor=True):
            inputs = self.logic.inputsFor(p.model, p.inputVolume)
            task = self.logic.explain(p.segmentation, p.segmentId, p.model, inputs, method=p.method,
                                      uncertainty=p.computeUncertainty, device=p.device, colormap=p.colormap,
                                      threshold=p.threshold, onProgress=self.run.progress, onLog=self.run.log,
                                      onDone=self.onDone)
            self.run.track(task)
        self.run.reset()

    def onDone(self, task) -> None:
        self.run.done(task, on_success=self.showResult)

    def showResult(self, maps) -> None:
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.heatmapVolume = maps["heatmap"]
            self._parameterNode.uncertaintyVolume = maps["uncertainty"]
            self._parameterNode.overlay = "heat map"

    def onToSegment(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not make a segment from the map."), waitCursor=True):
            self.logic.thresholdToSegment(self._shownMap(), p.threshold, p.segmentation)
