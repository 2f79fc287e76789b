"""The Celery app. Tasks live in each app's tasks.py; the beat schedule is CELERY_BEAT_SCHEDULE in
settings. Each task is logged, in the trace of the request that sent it (core.task_log)."""

import os

from celery import Celery, signals

from core import task_log

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("promptramp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

signals.before_task_publish.connect(task_log.add_trace_header, weak=False)
signals.task_prerun.connect(task_log.task_begin, weak=False)
signals.task_postrun.connect(task_log.task_end, weak=False)
