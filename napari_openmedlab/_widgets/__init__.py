"""Everything that imports napari or Qt. Import the widget lazily: napari does, via napari.yaml."""
