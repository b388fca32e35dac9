"""DeepSegTumor panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from deepseg_slicer.compat import _
from deepseg_slicer.panel import (RunControls, confirm_replace, ensure_dependencies, fetch_model_task,
                                  fill_device_combo, fill_model_combo, load_models, show_segmentation)

from .Logic import MAX_INPUTS, DeepSegTumorLogic
from .Parameters import DeepSegTumorParameterNode


class DeepSegTumorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._choices = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepSegTumor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepSegTumorLogic()
        self.run = RunControls(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.ui.logTextEdit,
                               applyText=_("Apply"))
        self.inputLabels = [self.ui.inputLabel1, self.ui.inputLabel2, self.ui.inputLabel3, self.ui.inputLabel4]
        self.inputSelectors = [self.ui.inputVolumeSelector1, self.ui.inputVolumeSelector2,
                               self.ui.inputVolumeSelector3, self.ui.inputVolumeSelector4]

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.autoAssignButton.connect("clicked()", self.onAutoAssign)
        self.ui.fetchModelButton.connect("clicked()", self.onFetchModel)
        self.ui.applyButton.connect("clicked()", self.onApply)

        fill_device_combo(self.ui.deviceComboBox)
        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
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

    def setParameterNode(self, inputParameterNode: "DeepSegTumorParameterNode | None") -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _inputNodes(self) -> list:
        p = self._parameterNode
        nodes = [p.inputVolume1, p.inputVolume2, p.inputVolume3, p.inputVolume4]
        return nodes[:len(self._currentInputs())]

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self.run.running or not self._parameterNode:
            return
        p = self._parameterNode
        self.ui.roiSelector.enabled = p.useROI
        ready = bool(p.model and self._inputNodes() and all(self._inputNodes()) and (p.roi or not p.useROI))
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment") if ready else _("Select a model, a volume for each input and (if used) an ROI")

    # --- model and inputs ------------------------------------------------------------------
    def refreshModels(self) -> None:
        self._choices = load_models(self.logic)
        fill_model_combo(self.ui.modelComboBox, self._choices, self._parameterNode.model)
        self.onModelChanged()

    def _currentChoice(self):
        model_id = self.ui.modelComboBox.currentData
        return next((c for c in self._choices if c.id == model_id), None)

    def _currentInputs(self):
        choice = self._currentChoice()
        return list(choice.inputs[:MAX_INPUTS]) if choice else []

    def onModelChanged(self, index=None) -> None:
        choice = self._currentChoice()
        self.ui.modelInfoLabel.text = choice.summary if choice else _("No tumour/lesion model in the catalog.")
        self.ui.fetchModelButton.enabled = bool(choice and not choice.installed)
        specs = self._currentInputs()
        for n, (label, selector) in enumerate(zip(self.inputLabels, self.inputSelectors)):
            used = n < len(specs)
            label.visible = selector.visible = used
            if used:
                label.text = f"{specs[n].name} ({specs[n].modality}):"
        if choice and self._parameterNode.model != choice.id:
            self._parameterNode.model = choice.id
            self.onAutoAssign()

    def onAutoAssign(self) -> None:
        """Fill the inputs from the volumes' names (the user can change them afterwards)."""
        specs = self._currentInputs()
        nodes = self.logic.assignInputs(specs) if specs else []
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            for n, node in enumerate(nodes):
                setattr(self._parameterNode, f"inputVolume{n + 1}", node)

    def onDeviceChanged(self, index=None) -> None:
        self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    def onFetchModel(self) -> None:
        task = fetch_model_task(self._currentChoice(), self.run, on_success=lambda result: self.refreshModels())
        if task is not None:
            self.run.track(task)

    # --- run ------------------------------------------------------------------------------
    def onApply(self) -> None:
        if self.run.running:
            self.run.cancel()
            return
        p = self._parameterNode
        if not ensure_dependencies(self.run.log) or not confirm_replace(p.outputSegmentation):
            return
        self.ui.summaryLabel.text = ""
        self.run.prepare()
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            task = self.logic.segment(self._inputNodes(), p.model, roiNode=p.roi if p.useROI else None,
                                      minLesionSizeMl=p.minLesionSizeMl, keepLargest=p.keepLargest, fast=p.fastMode,
                                      device=p.device, outputNode=p.outputSegmentation,
                                      onProgress=self.run.progress, onLog=self.run.log, onDone=self.onDone)
            self.run.track(task)
        self.run.reset()

    def onDone(self, task) -> None:
        self.run.done(task, on_success=self.showResult)

    def showResult(self, segmentationNode) -> None:
        p = self._parameterNode
        p.outputSegmentation = segmentationNode
        show_segmentation(segmentationNode, p.inputVolume1, p.showIn3D)
        self.ui.summaryLabel.text = self.logic.summaryText(self.logic.summarize(segmentationNode, p.inputVolume1))
