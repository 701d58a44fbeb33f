"""Using a trained BERT: fill-mask and sentence embeddings."""
