"""numpy_bert: BERT in pure NumPy, forward and backward written by hand."""

from .config import PRESETS, BertConfig

__all__ = ["PRESETS", "BertConfig"]
