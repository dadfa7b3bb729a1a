"""The Django admin for the queue's tables.

Rows are shown, never edited: every change goes through
:mod:`dbqueue_embedded.operations` (and from there the store), as actions that
check the permission each one needs (see ``operations.PERMISSIONS``).
"""

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import operations
from .backend import queue_backend_aliases
from .models import (
    ConcurrencyLease,
    Job,
    NamedJob,
    QueuePause,
    RecurringTask,
    WorkerProcess,
)
from .recurring import unschedule_recurring_task


def pretty_json(value: Any) -> SafeString:
    """A JSON value, indented, in a <pre>."""
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str)
    )


def error_list(errors: list[dict[str, str]]) -> SafeString:
    """Each attempt's error: its exception class, then its traceback, newest first."""
    if not errors:
        return format_html("{}", "-")
    return format_html_join(
        "",
        '<details{}><summary>Attempt {}: <code>{}</code></summary><pre class="dbq-tb">'
        "{}</pre></details>",
        (
            (
                " open" if number == len(errors) else "",
                number,
                error["exception_class_path"],
                error["traceback"],
            )
            for number, error in reversed(list(enumerate(errors, start=1)))
        ),
    )


def _may(operation: str) -> Callable[[admin.ModelAdmin, HttpRequest], bool]:
    """A ``has_<operation>_permission`` method, for ``allowed_permissions``."""

    def has_permission(self: admin.ModelAdmin, request: HttpRequest) -> bool:
        return operations.allowed(request.user, operation)

    return has_permission


class RecentValuesFilter(admin.SimpleListFilter):
    """Filter by the values a column has among the latest jobs: Django's own
    filter would read the distinct values of the whole table on every page.
    A value given in the URL filters whether it is listed or not."""

    # How many of the latest jobs offer their values.
    RECENT = 2000

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, str]]:
        latest = (
            model_admin.get_queryset(request)
            .order_by("-enqueued_at")
            .values_list(self.parameter_name, flat=True)[: self.RECENT]
        )
        return [(value, value) for value in sorted(set(latest))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


class TaskFilter(RecentValuesFilter):
    title = "task"
    parameter_name = "task_path"


class QueueFilter(RecentValuesFilter):
    title = "queue"
    parameter_name = "queue_name"


class NameFilter(RecentValuesFilter):
    title = "name"
    parameter_name = "name"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the queue writes: operators look at them and act through actions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "short_id",
        "task_path",
        "queue_name",
        "status",
        "priority",
        "attempts",
        "enqueued_at",
        "finished_at",
    ]
    list_filter = ["status", QueueFilter, TaskFilter, "backend"]
    search_fields = ["task_path", "name"]
    search_help_text = "A job id, or part of a task path or job name."
    ordering = ["-enqueued_at"]
    # Counting a large table on every page is slow; the pager does without.
    show_full_result_count = False
    actions = ["retry", "discard", "cancel", "run_now", "pause_queues", "resume_queues"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "task_path",
                    "name",
                    "status",
                    "backend",
                    "queue_name",
                    "priority",
                    "worker_ids",
                    "claimed_by",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "enqueued_at",
                    "run_after",
                    "available_at",
                    "started_at",
                    "last_attempted_at",
                    "finished_at",
                    "cancel_requested_at",
                ]
            },
        ),
        ("Errors", {"fields": ["error_tracebacks"]}),
        (
            "Data",
            {"fields": ["arguments", "keyword_arguments", "result", "workspace_data"]},
        ),
        (
            "Uniqueness and concurrency",
            {
                "classes": ["collapse"],
                "fields": [
                    "unique_key",
                    "unique_until_finished",
                    "concurrency_key",
                    "concurrency_limit",
                    "concurrency_lease",
                ],
            },
        ),
    ]
    readonly_fields = [
        "id",
        "task_path",
        "name",
        "status",
        "backend",
        "queue_name",
        "priority",
        "worker_ids",
        "claimed_by",
        "enqueued_at",
        "run_after",
        "available_at",
        "started_at",
        "last_attempted_at",
        "finished_at",
        "cancel_requested_at",
        "error_tracebacks",
        "arguments",
        "keyword_arguments",
        "result",
        "workspace_data",
        "unique_key",
        "unique_until_finished",
        "concurrency_key",
        "concurrency_limit",
        "concurrency_lease",
    ]

    has_retry_permission = _may("retry")
    has_discard_permission = _may("discard")
    has_cancel_permission = _may("cancel")
    has_run_now_permission = _may("run_now")
    has_pause_permission = _may("pause")
    has_resume_permission = _may("resume")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        try:
            job_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(id=job_id), False

    @admin.display(description="id")
    def short_id(self, job: Job) -> str:
        return str(job.id)[:8]

    @admin.display(description="attempts")
    def attempts(self, job: Job) -> int:
        return len(job.worker_ids)

    @admin.display(description="errors")
    def error_tracebacks(self, job: Job) -> SafeString:
        return error_list(job.errors)

    @admin.display(description="args")
    def arguments(self, job: Job) -> SafeString:
        return pretty_json(job.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, job: Job) -> SafeString:
        return pretty_json(job.kwargs)

    @admin.display(description="return value")
    def result(self, job: Job) -> SafeString:
        return pretty_json(job.return_value)

    @admin.display(description="workspace")
    def workspace_data(self, job: Job) -> SafeString:
        return pretty_json(job.workspace)

    def _report(self, request: HttpRequest, done: operations.Done) -> None:
        level = messages.SUCCESS if done.changed else messages.WARNING
        self.message_user(request, str(done), level)

    @admin.action(description="Retry the selected failed jobs", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, operations.retry_jobs(queryset))

    @admin.action(
        description="Discard (delete) the selected failed jobs",
        permissions=["discard"],
    )
    def discard(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, operations.discard_jobs(queryset))

    @admin.action(description="Cancel the selected jobs", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, operations.cancel_jobs(queryset))

    @admin.action(
        description="Run the selected waiting jobs now", permissions=["run_now"]
    )
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, operations.run_jobs_now(queryset))

    @admin.action(
        description="Pause the queues of the selected jobs", permissions=["pause"]
    )
    def pause_queues(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._change_queues(request, queryset, operations.pause_queue, "Paused")

    @admin.action(
        description="Resume the queues of the selected jobs", permissions=["resume"]
    )
    def resume_queues(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._change_queues(request, queryset, operations.resume_queue, "Resumed")

    def _change_queues(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        change: Callable[[str, str], bool],
        verb: str,
    ) -> None:
        changed, refused = [], []
        for backend, name in sorted(set(queryset.values_list("backend", "queue_name"))):
            try:
                if change(backend, name):
                    changed.append(name)
            except ValueError as exc:  # a backend since removed, say
                refused.append(str(exc))
        self.message_user(
            request, f"{verb} {len(changed)} queue(s): {', '.join(changed) or '-'}."
        )
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


@admin.register(NamedJob)
class NamedJobAdmin(JobAdmin):
    list_display = [
        "short_id",
        "name",
        "state",
        "next_task",
        "queue_name",
        "priority",
        "enqueued_at",
        "finished_at",
    ]
    list_filter = [NameFilter, "status", QueueFilter, "backend"]
    ordering = ["-enqueued_at"]

    @admin.display(description="state")
    def state(self, job: NamedJob) -> str:
        return job.state


@admin.register(WorkerProcess)
class WorkerProcessAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "mode",
        "hostname",
        "pid",
        "backend",
        "concurrency",
        "connection_budget",
        "started_at",
        "last_heartbeat_at",
        "heartbeat_age",
        "stopping_since",
    ]
    list_filter = ["mode", "backend", "hostname"]
    ordering = ["hostname", "pid"]
    readonly_fields = [
        "id",
        "mode",
        "hostname",
        "pid",
        "backend",
        "queues",
        "concurrency",
        "connection_budget",
        "started_at",
        "last_heartbeat_at",
        "dead_after",
        "stopping_since",
        "loop_states",
    ]
    exclude = ["loops"]

    @admin.display(description="heartbeat age")
    def heartbeat_age(self, process: WorkerProcess) -> str:
        age = timezone.now() - process.last_heartbeat_at
        return f"{max(age, timedelta(0)).total_seconds():.0f} s"

    @admin.display(description="loops")
    def loop_states(self, process: WorkerProcess) -> SafeString:
        return pretty_json(process.loops)


@admin.register(RecurringTask)
class RecurringTaskAdmin(ReadOnlyAdmin):
    """Schedules added with ``schedule_recurring_task()``; deleting one unschedules it.

    Schedules from OPTIONS live in settings, not in this table; the dashboard
    shows both.
    """

    list_display = [
        "key",
        "schedule",
        "timezone",
        "task_path",
        "queue_name",
        "backend",
        "created_at",
    ]
    list_filter = ["backend"]
    search_fields = ["key", "task_path"]
    readonly_fields = [
        "key",
        "backend",
        "task_path",
        "schedule",
        "timezone",
        "args",
        "kwargs",
        "queue_name",
        "priority",
        "missed",
        "created_at",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request: HttpRequest, obj: RecurringTask) -> None:
        unschedule_recurring_task(obj.key, backend=obj.backend)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for row in queryset:
            self.delete_model(request, row)


class QueuePauseForm(forms.ModelForm):
    """Pause a queue: a backend of this queue, and one of its queue names."""

    backend = forms.ChoiceField(
        choices=lambda: [(a, a) for a in queue_backend_aliases()]
    )

    class Meta:
        model = QueuePause
        fields = ["backend", "queue_name"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        alias, name = cleaned.get("backend"), cleaned.get("queue_name")
        if alias and name:
            try:
                queue = operations.queue_to_pause(alias, name)
            except ValueError as exc:
                self.add_error("queue_name", str(exc))
            else:
                if queue.paused:
                    self.add_error("queue_name", f"Queue {name!r} is paused already.")
        return cleaned

    def validate_unique(self) -> None:
        """clean() said it in words; the store's insert is the real guard."""


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    """A row per paused queue: adding one pauses the queue, deleting it resumes."""

    form = QueuePauseForm
    list_display = ["queue_name", "backend", "paused_at"]
    list_filter = ["backend"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return operations.allowed(request.user, "pause")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return operations.allowed(request.user, "resume")

    def save_model(
        self, request: HttpRequest, obj: QueuePause, form: Any, change: bool
    ) -> None:
        operations.pause_queue(obj.backend, obj.queue_name)
        obj.pk = (
            QueuePause.objects.filter(backend=obj.backend, queue_name=obj.queue_name)
            .values_list("pk", flat=True)
            .first()
        )

    def delete_model(self, request: HttpRequest, obj: QueuePause) -> None:
        operations.resume_queue(obj.backend, obj.queue_name)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for pause in queryset:
            self.delete_model(request, pause)


@admin.register(ConcurrencyLease)
class ConcurrencyLeaseAdmin(ReadOnlyAdmin):
    list_display = ["key", "slot", "job", "expires_at", "backend"]
    list_filter = ["backend"]
    search_fields = ["key"]
    ordering = ["key", "slot"]

    @admin.display(description="job")
    def job(self, lease: ConcurrencyLease) -> SafeString:
        url = reverse("admin:dbqueue_embedded_job_change", args=[lease.job_id])
        return format_html('<a href="{}">{}</a>', url, lease.job_id)
