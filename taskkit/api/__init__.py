"""The HTTP API (Nitro's dev-server endpoints): list tasks, run one, or queue it.

Mounted by the project, never by taskkit: ``path("_tasks/", include("taskkit.urls"))``.
The views are thin; they call :func:`taskkit.run_task` and :func:`taskkit.enqueue`.
"""
