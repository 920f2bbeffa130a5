"""The sending side of the bridge: check a run, store what must be stored, publish it.

Data flows one way: :mod:`.enqueue` prepares runs (:mod:`.messages`) and hands
them to :mod:`.publish`, which sends them through Celery (:mod:`.redis_batch` for
a batch on Redis). Nothing here runs a task.
"""
