"""The example shop with a runtime that is not told about requests.

Not how dbqueue_embedded runs (``EmbeddedQueue`` reports each request, and
the runtime defers its bookkeeping while one is in flight): this variant
exists only so that the benchmark can measure what that deferring buys.
"""

import os

from django.core.asgi import get_asgi_application

from dbqueue_embedded.contrib.asgi import EmbeddedQueue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.server_settings")
django_application = get_asgi_application()
queue = EmbeddedQueue(django_application)


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await queue(scope, receive, send)
    else:
        await django_application(scope, receive, send)
