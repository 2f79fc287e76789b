"""The registry's Celery task: the Langfuse mirror (``registry.langfuse_mirror``), on the
``outbound`` queue, kicked after each change to mirror and run by beat. Thin and safe to run
twice."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from registry.langfuse_mirror import MIRROR_TASK, mirror_deliver_due


@shared_task(name=MIRROR_TASK)
def langfuse_mirror_task() -> int:
    return len(mirror_deliver_due(now=timezone.now()))
