"""The inference backend names (a light module: the options and the Slicer panels need them without torch)."""

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
