"""taskkit's benchmark suite: taskkit against raw Celery, on the local Redis.

Run it with ``.venv/bin/python bench/run.py [--quick]``; see ``bench/README.md``.
"""
