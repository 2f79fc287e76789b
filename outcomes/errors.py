from core.errors import PayloadTooLarge, ServiceUnavailable, ValidationFailed


class InvalidEvents(ValidationFailed, code="invalid_events"): ...


class BatchTooLarge(PayloadTooLarge): ...


class IngestBacklog(ServiceUnavailable, code="ingest_backlog"): ...
