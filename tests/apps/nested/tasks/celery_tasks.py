"""A Celery shared_task living beside taskkit tasks keeps working untouched."""

from celery import shared_task


@shared_task(name="tests.legacy_add")
def legacy_add(x: int, y: int) -> int:
    return x + y
