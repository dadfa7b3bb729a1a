from django.contrib import admin
from django.urls import include, path
from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    # The queue's live dashboard: staff only.
    path("queue/", include("dbqueue_embedded.dashboard.urls")),
    path("", views.index, name="index"),
    path("enqueue/<str:kind>/", views.enqueue, name="enqueue"),
    path("jobs/<uuid:job_id>/progress/", views.job_progress, name="job_progress"),
]
