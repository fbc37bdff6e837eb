"""Built-in procedural phantoms: the default, download-free datasets of lungsynth.

:mod:`lungsynth.phantom.ct` generates synthetic chest CT volumes (COVID-like
ground-glass / consolidation lesions vs. lesion-free) and writes them as DICOM
series, NIfTI volumes and a ``labels.csv``.
"""
