"""The Celery app. Tasks live in each app's tasks.py; the beat schedule is CELERY_BEAT_SCHEDULE in
settings. Each task is logged, in the trace of the request that sent it (core.task_log), and
traced when tracing is on (core.tracing, started in each worker process)."""

import os
from typing import Any

from celery import Celery, signals

from core import task_log

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("promptramp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

signals.before_task_publish.connect(task_log.add_trace_header, weak=False)
signals.task_prerun.connect(task_log.task_begin, weak=False)
signals.task_postrun.connect(task_log.task_end, weak=False)


def _start_tracing(**_: Any) -> None:
    from core.tracing import tracing_start  # noqa: PLC0415 (needs Django set up, as a worker has it)

    tracing_start()


signals.worker_process_init.connect(_start_tracing, weak=False)
