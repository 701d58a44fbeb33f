"""Text to token ids: the WordPiece tokenizer and the trainer of its vocabulary."""
