"""napari-pathreview: breast pathology review in napari."""

__version__ = "0.1.0"
