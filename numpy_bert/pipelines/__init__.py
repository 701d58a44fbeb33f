"""Using a trained BERT: transformers-style pipelines (``pipeline.py``, one module per task), fill-mask
for the command line, and sentence embeddings."""
