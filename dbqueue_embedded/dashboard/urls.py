"""The dashboard's URLs. Mount them in the project's urls.py::

path("queue/", include("dbqueue_embedded.dashboard.urls")),
"""

from django.urls import path

from ..metrics.views import metrics
from . import views

app_name = "dbqueue_dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("panels/", views.panels, name="panels"),
    path("act/<str:operation>/", views.act, name="act"),
    # Prometheus; off unless settings.DBQUEUE_METRICS is set.
    path("metrics", metrics, name="metrics"),
]
