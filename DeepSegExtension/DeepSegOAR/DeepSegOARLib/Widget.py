"""DeepSegOAR panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from deepseg_slicer.compat import _
from deepseg_slicer.panel import (RunControls, confirm_replace, ensure_dependencies, fetch_model_task,
                                  fill_device_combo, fill_model_combo, load_models, show_segmentation)

from .Logic import DeepSegOARLogic
from .Parameters import DeepSegOARParameterNode


class DeepSegOARWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._choices = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepSegOAR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepSegOARLogic()
        self.run = RunControls(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.ui.logTextEdit,
                               applyText=_("Apply"))

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.structureList.connect("itemChanged(QListWidgetItem*)", self.onStructuresChanged)
        self.ui.allStructuresButton.connect("clicked()", lambda: self.setAllStructures(True))
        self.ui.noStructuresButton.connect("clicked()", lambda: self.setAllStructures(False))
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
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode: "DeepSegOARParameterNode | None") -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # widgets with a "SlicerParameterName" property in the .ui file are connected here
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self.run.running:
            return
        p = self._parameterNode
        ready = bool(p and p.inputVolume and p.model)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment the input volume") if ready else _("Select an input volume and a model")

    # --- model, structures, device ---------------------------------------------------------
    def refreshModels(self) -> None:
        self._choices = load_models(self.logic)
        fill_model_combo(self.ui.modelComboBox, self._choices, self._parameterNode.model if self._parameterNode else "")
        self.onModelChanged()

    def _currentChoice(self):
        model_id = self.ui.modelComboBox.currentData
        return next((c for c in self._choices if c.id == model_id), None)

    def onModelChanged(self, index=None) -> None:
        choice = self._currentChoice()
        self.ui.modelInfoLabel.text = choice.summary if choice else _("No organ-at-risk model in the catalog.")
        self.ui.fetchModelButton.enabled = bool(choice and not choice.installed)
        changed = bool(self._parameterNode and choice and self._parameterNode.model != choice.id)
        kept = "" if changed or not self._parameterNode else self._parameterNode.structures
        wanted = set(filter(None, kept.split(",")))
        self.ui.structureList.blockSignals(True)
        self.ui.structureList.clear()
        for lab in (choice.labels if choice else ()):
            item = qt.QListWidgetItem(f"{lab.name}  ({lab.tg263})" if lab.tg263 else lab.name)
            item.setData(qt.Qt.UserRole, lab.name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if not wanted or lab.name in wanted else qt.Qt.Unchecked)
            self.ui.structureList.addItem(item)
        self.ui.structureList.blockSignals(False)
        if changed:
            with slicer.util.NodeModify(self._parameterNode.parameterNode):
                self._parameterNode.model = choice.id
                self._parameterNode.structures = ""

    def onStructuresChanged(self, item=None) -> None:
        items = [self.ui.structureList.item(i) for i in range(self.ui.structureList.count)]
        checked = [it.data(qt.Qt.UserRole) for it in items if it.checkState() == qt.Qt.Checked]
        self._parameterNode.structures = "" if len(checked) == len(items) else ",".join(checked)

    def setAllStructures(self, checked: bool) -> None:
        self.ui.structureList.blockSignals(True)
        for i in range(self.ui.structureList.count):
            self.ui.structureList.item(i).setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        self.ui.structureList.blockSignals(False)
        self.onStructuresChanged()

    def onDeviceChanged(self, index=None) -> None:
        self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    def onFetchModel(self) -> None:
        choice = self._currentChoice()
        task = fetch_model_task(choice, self.run, on_success=lambda result: self.refreshModels())
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
        items = [self.ui.structureList.item(i) for i in range(self.ui.structureList.count)]
        if items and not any(it.checkState() == qt.Qt.Checked for it in items):
            slicer.util.errorDisplay(_("Select at least one structure."))
            return
        structures = [s for s in p.structures.split(",") if s] or None
        self.run.prepare()
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            task = self.logic.segment(p.inputVolume, p.model, structures=structures, useTG263=p.useTG263,
                                      fast=p.fastMode, device=p.device, outputNode=p.outputSegmentation,
                                      onProgress=self.run.progress, onLog=self.run.log, onDone=self.onDone)
            self.run.track(task)
        self.run.reset()

    def onDone(self, task) -> None:
        self.run.done(task, on_success=self.showResult)

    def showResult(self, segmentationNode) -> None:
        self._parameterNode.outputSegmentation = segmentationNode
        show_segmentation(segmentationNode, self._parameterNode.inputVolume, self._parameterNode.showIn3D)
