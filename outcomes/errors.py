from core.errors import DomainError, ServiceUnavailable, ValidationFailed


class InvalidEvents(ValidationFailed):
    code = "invalid_events"


class BatchTooLarge(DomainError):
    status_code = 413
    code = "too_large"


class IngestBacklog(ServiceUnavailable):
    code = "ingest_backlog"
