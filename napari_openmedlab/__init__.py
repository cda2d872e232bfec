"""napari-openmedlab: interactive 3D medical segmentation with OpenMEDLab foundation models.

Importing the package pulls in neither torch nor Qt; see ``napari_openmedlab.io`` (volumes),
``napari_openmedlab.engines`` (models) and ``napari_openmedlab.evaluation``.
"""

__version__ = "0.1.0"
