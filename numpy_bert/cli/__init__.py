"""The command line shared by ``python -m numpy_bert`` and ``python -m torch_bert``."""

from .main import main

__all__ = ["main"]
