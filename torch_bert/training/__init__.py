"""torch_bert behind numpy_bert's trainers: pre-training, fine-tuning and data-parallel training."""
