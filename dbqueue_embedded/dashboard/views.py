"""The dashboard page, the panels it refreshes live, and its actions.

Who may look: staff users, or the users holding
``settings.DBQUEUE_DASHBOARD_PERMISSION`` when it is set. Who may act: the
users holding the permission of each action (see ``operations.PERMISSIONS``),
exactly as in the admin.
"""

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from .. import operations
from ..backend import DatabaseBackend, queue_backend
from ..conf import DASHBOARD_REFRESH_SECONDS
from ..models import Job
from .charts import finished_per_minute
from .snapshot import take_snapshot

JOB_OPERATIONS = {
    "retry": operations.retry_jobs,
    "discard": operations.discard_jobs,
    "cancel": operations.cancel_jobs,
    "run_now": operations.run_jobs_now,
}
QUEUE_OPERATIONS = {
    "pause": operations.pause_queue,
    "resume": operations.resume_queue,
}


def may_view(user: Any) -> bool:
    """Whether ``user`` may see the dashboard."""
    if not (user.is_authenticated and user.is_active):
        return False
    permission = getattr(settings, "DBQUEUE_DASHBOARD_PERMISSION", None)
    return user.has_perm(permission) if permission else user.is_staff


def viewers_only(
    *, login_redirect: bool
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Refuse users who may not view; send anonymous visitors of a page (not
    of the panels the page fetches) to log in."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if may_view(request.user):
                return view(request, *args, **kwargs)
            if login_redirect and not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), _login_url())
            raise PermissionDenied("You may not see the queue's dashboard.")

        return guarded

    return decorate


@require_GET
@viewers_only(login_redirect=True)
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "dbqueue_embedded/dashboard/index.html", _context(request))


@require_GET
@viewers_only(login_redirect=False)
def panels(request: HttpRequest) -> HttpResponse:
    """The page's content alone: the page fetches it every few seconds."""
    return render(request, "dbqueue_embedded/dashboard/panels.html", _context(request))


@require_POST
@viewers_only(login_redirect=False)
def act(request: HttpRequest, operation: str) -> HttpResponse:
    """Perform one operation on one job or one queue, then show the page."""
    if operation not in JOB_OPERATIONS and operation not in QUEUE_OPERATIONS:
        raise Http404(f"No operation {operation!r}.")
    if not operations.allowed(request.user, operation):
        raise PermissionDenied(
            f"You need the {operations.PERMISSIONS[operation]} permission."
        )
    backend = _backend(request)
    if operation in JOB_OPERATIONS:
        job = get_object_or_404(
            Job.objects.using(backend.database),
            id=_job_id(request.POST.get("job", "")),
            backend=backend.alias,
        )
        notice = str(JOB_OPERATIONS[operation]([job]))
    else:
        queue_name = request.POST.get("queue", "")
        try:
            changed = QUEUE_OPERATIONS[operation](backend.alias, queue_name)
        except ValueError as exc:
            return HttpResponseBadRequest(str(exc))
        verb = "Paused" if operation == "pause" else "Resumed"
        notice = f"{verb} {queue_name}." if changed else f"{queue_name}: no change."
    messages.info(request, notice, fail_silently=True)
    return HttpResponseRedirect(
        reverse("dbqueue_dashboard:index") + "?" + urlencode({"backend": backend.alias})
    )


def _context(request: HttpRequest) -> dict[str, Any]:
    backend = _backend(request)
    snapshot = take_snapshot(backend)
    return {
        "snapshot": snapshot,
        "chart": finished_per_minute(snapshot.minutes),
        "may": {
            op: operations.allowed(request.user, op) for op in operations.PERMISSIONS
        },
        "applies_to": operations.APPLIES_TO,
        "refresh_seconds": getattr(
            settings, "DBQUEUE_DASHBOARD_REFRESH", DASHBOARD_REFRESH_SECONDS
        ),
        "admin_jobs_url": _admin_url("admin:dbqueue_embedded_job_changelist"),
    }


def _backend(request: HttpRequest) -> DatabaseBackend:
    alias = request.GET.get("backend") or "default"
    try:
        return queue_backend(alias)
    except ImproperlyConfigured:
        raise Http404(f"No backend {alias!r} of dbqueue_embedded.") from None


def _job_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Http404(f"{value!r} is not a job id.") from None


def _admin_url(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def _login_url() -> str:
    return _admin_url("admin:login") or settings.LOGIN_URL
