"""Using a trained BERT or family member: transformers-style pipelines (``pipeline.py``, one module per
task, ``auto.py`` choosing the class and tokenizer of a folder), fill-mask for the command line, and
sentence embeddings."""
