"""fusebox's Celery side: the app, the model runners, the guarded tasks and fallbacks.

``celery -A workers worker -Q <queues>`` finds the app here.
"""

from workers.app import app
from workers import tasks as _tasks  # noqa: F401 - registers the tasks

__all__ = ["app"]
