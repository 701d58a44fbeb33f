"""torch_bert: the PyTorch twin of numpy_bert, module for module and name for name."""
