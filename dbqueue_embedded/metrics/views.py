"""The Prometheus endpoint: off unless ``settings.DBQUEUE_METRICS`` is set.

::

    DBQUEUE_METRICS = {
        "token": os.environ["METRICS_TOKEN"],  # Authorization: Bearer <token>
        "permission": "dbqueue_embedded.view_job",  # or a logged-in user with it
    }
"""

import hmac
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from ..backend import queue_backend, queue_backend_aliases
from .exposition import render_metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    config = metrics_config()
    if config is None:
        raise Http404("Metrics are off; set DBQUEUE_METRICS to turn them on.")
    if not _authorized(request, config):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and "permission" in config:
            return HttpResponseForbidden("You lack the metrics permission.")
        response = HttpResponse("Metrics need a token or a permission.", status=401)
        if config.get("token"):
            response["WWW-Authenticate"] = 'Bearer realm="dbqueue metrics"'
        return response
    backends = [queue_backend(alias) for alias in queue_backend_aliases()]
    return HttpResponse(render_metrics(backends), content_type=CONTENT_TYPE)


def metrics_config() -> dict[str, Any] | None:
    """``settings.DBQUEUE_METRICS``, checked; None when metrics are off."""
    config = getattr(settings, "DBQUEUE_METRICS", None)
    if config is None:
        return None
    if not isinstance(config, dict) or not (
        set(config) <= {"token", "permission"} and config
    ):
        raise ImproperlyConfigured(
            "DBQUEUE_METRICS must be a dict with a 'token', a 'permission' or "
            f"both, not {config!r}."
        )
    token = config.get("token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ImproperlyConfigured(
            "DBQUEUE_METRICS['token'] must be a string of at least 16 characters."
        )
    return config


def _authorized(request: HttpRequest, config: dict[str, Any]) -> bool:
    token = config.get("token")
    presented = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        return True
    permission = config.get("permission")
    user = request.user if hasattr(request, "user") else None
    return bool(permission and user and user.is_active and user.has_perm(permission))
