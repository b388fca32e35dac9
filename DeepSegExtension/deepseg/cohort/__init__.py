"""Cohort runs on Dask distributed: ``deepseg batch`` / ``deepseg.batch(...)``.

``cases`` lists the cases, ``plan`` sizes the local workers, ``task`` is what a worker does per case,
``table`` writes ``cohort.csv``/``cohort.json``, ``run`` drives it all from the client.
"""
