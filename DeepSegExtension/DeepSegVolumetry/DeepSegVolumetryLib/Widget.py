"""DeepSegVolumetry panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import qt
import slicer

from deepseg_slicer.compat import _
from deepseg_slicer.panel import ParameterNodeWidget

from .Logic import DeepSegVolumetryLogic


class DeepSegVolumetryWidget(ParameterNodeWidget):
    defaultNodes = {"segmentation": "vtkMRMLSegmentationNode"}

    def setup(self) -> None:
        self.setupPanel(DeepSegVolumetryLogic())  # the mode combo box: filled from the Choice by connectGui
        self.ui.progressBar.hide()

        self.ui.applyButton.connect("clicked()", self.onApply)
        self.ui.exportCsvButton.connect("clicked()", self.onExportCsv)
        self.initializeParameterNode()

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
