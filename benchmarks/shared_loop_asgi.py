"""The example shop with the runtime on the server's own event loop.

Not how dbqueue_embedded runs (it uses its own loop in its own thread): this
variant exists only so that the benchmark can measure the alternative.
"""

import asyncio
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.server_settings")
django_application = get_asgi_application()


async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        await django_application(scope, receive, send)
        return
    from dbqueue_embedded.runtime.supervisor import Runtime

    await receive()  # lifespan.startup
    runtime = Runtime(mode="embedded", web_threads=1)
    serving = asyncio.create_task(runtime._serve(threading.Event()))
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown
    runtime.request_stop()
    await serving
    await send({"type": "lifespan.shutdown.complete"})
