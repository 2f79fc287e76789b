from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    name = "outcomes"
    verbose_name = "Outcomes: ingested events and their per-minute aggregates"

    def ready(self) -> None:
        from core.cluster_metrics import add_reader
        from outcomes.metrics import read_gauges

        add_reader(read_gauges)
