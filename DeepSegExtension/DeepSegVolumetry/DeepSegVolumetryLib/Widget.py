"""DeepSegVolumetry panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from deepseg_slicer.compat import _

from .Logic import DeepSegVolumetryLogic
from .Parameters import DeepSegVolumetryParameterNode

MODES = ("measure", "compare", "follow-up")


class DeepSegVolumetryWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepSegVolumetry.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepSegVolumetryLogic()
        for mode in MODES:
            self.ui.modeComboBox.addItem(mode)
        self.ui.progressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked()", self.onApply)
        self.ui.exportCsvButton.connect("clicked()", self.onExportCsv)
        self.initializeParameterNode()

    def cleanup(self) -> None:
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
        if not self._parameterNode.segmentation:
            self._parameterNode.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")

    def setParameterNode(self, inputParameterNode: "DeepSegVolumetryParameterNode | None") -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if not p:
            return
        self.ui.compareCollapsibleButton.visible = p.mode == "compare"
        self.ui.followupCollapsibleButton.visible = p.mode == "follow-up"
        needed = {"measure": p.segmentation, "compare": p.segmentation and p.referenceSegmentation,
                  "follow-up": p.segmentation and p.followupSegmentation}[p.mode]
        self.ui.applyButton.enabled = bool(needed)
        self.ui.exportCsvButton.enabled = bool(p.outputTable)

    def onApply(self) -> None:
        p = self._parameterNode
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Measurement failed."), waitCursor=True):
            if p.mode == "measure":
                table = self.logic.measure(p.segmentation, p.image, p.outputTable)
            elif p.mode == "compare":
                table = self.logic.compare(p.segmentation, p.referenceSegmentation, p.image, p.outputTable,
                                           toleranceMm=p.toleranceMm)
            else:
                table, response = self.logic.followup(p.segmentation, p.followupSegmentation, p.image, p.followupImage,
                                                      p.outputTable, register=p.register)
                change = response["volume_change_percent"]
                self.ui.statusLabel.text = _("Volumetric response: {category} ({change})").format(
                    category=response["category"], change=f"{change:+.1f} %" if change is not None else _("no baseline volume"))
            p.outputTable = table
            self.ui.logTextEdit.appendPlainText(f"{p.mode}: {table.GetName()} ({table.GetNumberOfRows()} rows)")
            self.showTable(table)

    @staticmethod
    def showTable(table) -> None:
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()

    def onExportCsv(self) -> None:
        path = qt.QFileDialog.getSaveFileName(None, _("Export measurements"), "measurements.csv", "CSV (*.csv)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                self.logic.exportCsv(self._parameterNode.outputTable, path)
                self.ui.statusLabel.text = _("Wrote {path}").format(path=path)
