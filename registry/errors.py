from core.errors import Conflict, NotFound


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
