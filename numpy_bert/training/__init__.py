"""Training machinery: the pre-training and fine-tuning loops, run folders, evaluation, metrics and plots."""
