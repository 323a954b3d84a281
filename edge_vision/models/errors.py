"""Exceptions shared by the model loaders (zoo, backends, detectors, classifiers)."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model could not be loaded; the message names the file and what is wrong."""
