"""fusebox's Celery side: the app, the model runners, the guarded tasks and fallbacks."""
