"""fusebox's producer side: the Python client, the batch CLI and the HTTP surface.
Importing it costs nothing; each part imports what it needs."""
