"""The operator's pages under the admin site: dashboard, tasks, queues, delayed, periodic.

Each module holds the views of one page. They are thin: they call
:mod:`taskkit.queues`, the enqueue functions and the scheduling functions, as
the ``taskqueue`` command does. :mod:`taskkit.admin.dashboard` mounts them.
"""
