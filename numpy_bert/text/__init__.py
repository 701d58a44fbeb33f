"""Text to token ids: BERT's WordPiece and RoBERTa's byte-level BPE, each with the trainer of its vocabulary."""
