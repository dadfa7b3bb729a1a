import os

from django.core.asgi import get_asgi_application

from dbqueue_embedded.contrib.asgi import EmbeddedQueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
# Each server process runs the queue while it serves requests.
application = EmbeddedQueue(get_asgi_application())
