import random
import uuid

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.tasks import default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.views.decorators.http import require_POST

from dbqueue_embedded.models import Job
from dbqueue_embedded.named_jobs import create_job

from . import tasks

ENQUEUE = {
    "quick": lambda: tasks.send_receipt.enqueue(random.randint(1000, 9999)),
    "slow": lambda: tasks.build_sales_report.enqueue(5),
    "export": lambda: tasks.export_orders.enqueue(chunks=20),
    "failing": lambda: tasks.charge_card.enqueue(random.randint(1000, 9999)),
    "async": lambda: tasks.fetch_exchange_rate.enqueue("EUR"),
    "catalogue": lambda: create_job("import_catalogue", workspace={"supplier": "ACME"}),
}


def index(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.order_by("-enqueued_at")[:25]
    # Each job with the last line of its latest error ("ValueError: ...").
    rows = [
        (
            job,
            job.errors[-1]["traceback"].strip().splitlines()[-1] if job.errors else "",
        )
        for job in jobs
    ]
    return render(request, "shop/index.html", {"jobs": rows})


@require_POST
def enqueue(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in ENQUEUE:
        return HttpResponseNotFound(f"No task called {kind!r}.")
    ENQUEUE[kind]()
    return redirect("index")


def job_progress(request: HttpRequest, job_id: uuid.UUID) -> JsonResponse:
    """A task's status and progress, which the jobs page polls."""
    try:
        result = default_task_backend.get_result(str(job_id))
    except TaskResultDoesNotExist:
        raise Http404(f"No task result {job_id}.") from None
    progress = result.progress
    return JsonResponse(
        {
            "status": result.status,
            "progress": None
            if progress is None
            else {**progress.as_json(), "percent": progress.percent},
        }
    )
