"""The two networks (Paddle dygraph; exported with paddle.jit.save for paddle.inference).

For sentiment, character CNNs, BiGRUs and BiLSTMs (with word and lexicon embeddings) were
tried and scored 1.5-5 points below the n-gram model below on validation, and 0-0.3 points
above it when averaged with it, for minutes of CPU training instead of seconds: docs/nlp.md.
"""

from __future__ import annotations

import paddle
from paddle import nn
from paddle.nn import functional as F


class NgramSentiment(nn.Layer):
    """A weight per feature, summed, plus a bias: logistic regression over the features of
    ``features.py`` (n-grams, lexicon counts, verdict-clause n-grams), its weights started
    from Naive Bayes log-count ratios (Wang & Manning's NBSVM idea). Returns two logits,
    [-z/2, z/2], so that a softmax gives (1 - p, p) with p = sigmoid(z).

    Parameters:
      features: feature vocabulary size (0 pads).
      prior: initial weight per feature (NB log-count ratios, scaled).
    """

    def __init__(self, features: int, prior: paddle.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Embedding(features, 1, padding_idx=0)
        if prior is not None:
            self.weight.weight.set_value(prior.reshape([-1, 1]))
        self.bias = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, ids: paddle.Tensor) -> paddle.Tensor:
        z = self.weight(ids).squeeze(-1).sum(axis=1) + self.bias
        return paddle.stack([-z / 2, z / 2], axis=1)


class TaggerBiGRU(nn.Layer):
    """Characters -> embeddings -> bidirectional GRU -> a label per character.

    (A 2-layer BiLSTM was four times slower to train on CPU for no gain that the corpus
    could show.)
    """

    def __init__(self, vocab: int, labels: int, dim: int = 128, hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn = nn.GRU(dim, hidden, num_layers=1, direction="bidirect")
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, labels)

    def forward(self, ids: paddle.Tensor, lengths: paddle.Tensor) -> paddle.Tensor:
        h, _ = self.rnn(self.dropout(self.embed(ids)), sequence_length=lengths)
        return self.out(self.dropout(h))  # batch, time, labels
