"""Data: the embedded corpus, pre-training pairs and their masking, fine-tuning files and demo tasks."""
