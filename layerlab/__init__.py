"""layerlab: layer-wise analysis of speech-SSL and speaker models (probing, CKA) on Ray."""

__version__ = "0.1.0"
