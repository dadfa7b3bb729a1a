"""The chaos site for Gunicorn: ``gunicorn -c contrib/gunicorn.conf.py chaos.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chaos.settings")
application = get_wsgi_application()
