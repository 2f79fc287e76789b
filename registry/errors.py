from config.errors import Conflict, DomainError, NotFound


class PromptNotFound(NotFound):
    code = "prompt_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class LabelNotFound(NotFound):
    code = "label_not_found"


class NoProductionVersion(NotFound):
    code = "no_production"


class VersionConflict(Conflict):
    code = "version_conflict"


class ProductionFrozen(Conflict):
    code = "production_frozen"


class RenderTooLarge(DomainError):
    status_code = 413
    code = "render_too_large"
