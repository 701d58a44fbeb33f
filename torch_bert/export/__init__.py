"""Exporting torch_bert models for deployment: ONNX (torch_bert/export/onnx.py)."""
