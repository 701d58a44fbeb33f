"""Worked solution of notebook 01's exercise: WordPiece, greedy longest-match-first.

Run it from the repository root: python notebooks/solutions/01_text_to_tokens.py
(it checks the function with ex.check and exits with 1 if the check fails).
"""

import sys

from numpy_bert import exercises as ex


def wordpiece(word, vocab, unk_token="[UNK]", max_chars=100):
    # BERT gives up on very long words: each is a single unknown token.
    if len(word) > max_chars:
        return [unk_token]
    pieces = []
    start = 0
    while start < len(word):
        # From `start`, try the longest candidate first and shorten it one character at a time.
        for end in range(len(word), start, -1):
            piece = word[start:end]
            if start > 0:
                piece = "##" + piece  # inside a word, pieces are stored with the continuation prefix
            if piece in vocab:
                break
        else:
            # No piece starts here: the whole word is unknown, not only what is left of it.
            return [unk_token]
        pieces.append(piece)
        start = end  # carry on right after the piece
    return pieces  # the empty word never enters the loop: []


if __name__ == "__main__":
    verdicts = [ex.check("wordpiece", wordpiece)]
    sys.exit(0 if all(verdicts) else 1)
