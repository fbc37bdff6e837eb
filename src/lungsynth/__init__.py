"""lungsynth: reproducible synthetic lung imaging (CT and lung ultrasound) with GANs.

The package holds all logic; ``workflow/scripts`` only translate Snakemake's
``snakemake`` object into calls to it. No module here imports Snakemake.
"""

__version__ = "0.1.0"
