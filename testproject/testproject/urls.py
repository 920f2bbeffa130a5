"""The demo's URLs: the admin at /admin/, taskkit's HTTP API at /_tasks/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_tasks/", include("taskkit.urls")),
]
