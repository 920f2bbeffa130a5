"""The worker side of the bridge: the Celery task body that turns a message back into a run.

:mod:`.register` makes the Celery tasks; :mod:`.run` runs a message and records
it (through :mod:`.recorder` for ``track="runs"``), honouring
:mod:`.cancellations`; :mod:`.heartbeat` tells the leader Beat which workers are
alive. Nothing here sends a new message except a retry's row.
"""
