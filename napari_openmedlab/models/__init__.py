"""Model families (network code, checkpoint loading, weights cache).

Nothing heavy is imported here: torch is only loaded when a subpackage such as
:mod:`napari_openmedlab.models.sam_med3d` or :mod:`napari_openmedlab.models.sam_med2d`
is imported.
"""
