from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "rollouts"
    verbose_name = "Rollouts"

    def ready(self) -> None:
        from core.cluster_metrics import add_reader
        from rollouts.metrics import read_gauges

        add_reader(read_gauges)
