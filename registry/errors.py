from core.errors import Conflict, Forbidden, NotFound, PayloadTooLarge


class PromptNotFound(NotFound, code="prompt_not_found"): ...


class VersionNotFound(NotFound, code="version_not_found"): ...


class LabelNotFound(NotFound, code="label_not_found"): ...


class NoProductionVersion(NotFound, code="no_production"): ...


# 'production' belongs to the prompt's active rollout (settings.PROMPTRAMP_PRODUCTION_HOLDERS).
class ProductionFrozen(Conflict, code="production_frozen"): ...


# A render's values or output are too large (413).
class RenderTooLarge(PayloadTooLarge, code="render_too_large"): ...


# The prompt requires a second approver and the actor wrote the version it would serve.
class SecondApproverRequired(Forbidden, code="second_approver_required"): ...


# Only an admin may do this (e.g. turn a prompt's second approver off).
class AdminRequired(Forbidden, code="admin_required"): ...
