"""The example shop without the queue: the baseline for the memory figure."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.server_settings")
application = get_asgi_application()
