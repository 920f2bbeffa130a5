"""The HTTP API's URLs: ``path("_tasks/", include("taskkit.urls"))`` mounts it."""

from django.urls import path

from .api import views

app_name = "taskkit"
urlpatterns = [
    path("", views.index, name="api-index"),
    path(views.HEALTH, views.health, name="api-health"),
    path(views.METRICS, views.metrics, name="api-metrics"),
    path("<str:name>", views.task, name="api-task"),
]
