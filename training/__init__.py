"""Training fusebox's NLP models (``python -m training.train``): the training loop and the
Paddle networks it exports. Serving (``workers/nlp/``) loads what it writes and never imports
this package, which stays out of the wheel that model hosts install."""
