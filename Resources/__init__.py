"""DeepSeg data files (schemas, model catalog, terminology), installed as the ``deepseg_resources`` package."""
