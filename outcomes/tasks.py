from celery import shared_task

from outcomes.services import outcome_minutes_flush


@shared_task(name="outcomes.flush", ignore_result=True)
def flush() -> None:
    """Move pending outcome aggregates from Redis into PostgreSQL (beat, every few seconds)."""
    outcome_minutes_flush()
