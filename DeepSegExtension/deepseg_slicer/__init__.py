"""Code shared by the four DeepSeg Slicer modules (OAR, Tumor, Explain, Volumetry).

* ``progress_lines`` / ``process``: run the ``deepseg`` CLI in a separate process, parse its
  ``PROGRESS`` lines, cancel the whole process tree (no Qt needed, so it is tested headless);
* ``commands``: the command lines the panels run (PythonSlicer ``-m deepseg ...``);
* ``mrml``: the MRML bridge (volume nodes <-> core ``Volume``, results -> segmentation, overlay
  and table nodes), written against Slicer's MRML API and tested with ``slicer-core``;
* ``channels``: auto-assignment of volume nodes to a model's named inputs;
* ``dependencies``: first-use check of torch and ``Resources/requirements.txt``;
* ``tasks``: background (or blocking) runs that tie the above together for the module logics;
* ``logic``: the modules' logic base class; ``models``: the model selectors' catalog entries;
* ``selftest``: generated volume and tiny model for the modules' self-tests;
* ``compat``: Slicer's scripted-module API, with headless stand-ins when only slicer-core exists,
  and ``describe_module`` for the module classes;
* ``panel``: the panels' widget base classes (scripted-module lifecycle, parameter node, model
  selectors, Apply/Cancel) and Qt helpers (progress bar, log); GUI only.

Only ``panel`` imports ``qt``; ``mrml`` imports ``slicer``/``vtk`` lazily.
"""
