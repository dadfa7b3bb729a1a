import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from dbqueue_embedded.contrib.asgi import EmbeddedQueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
django_application = get_asgi_application()
if settings.DEBUG:
    # The admin's CSS in development, as runserver would serve it.
    django_application = ASGIStaticFilesHandler(django_application)
# Each server process runs the queue while it serves requests.
application = EmbeddedQueue(django_application)
