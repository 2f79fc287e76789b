from core.errors import Conflict, NotFound


class RolloutNotFound(NotFound, code="rollout_not_found"): ...


class WebhookNotFound(NotFound, code="webhook_not_found"): ...


# The action is not allowed in the rollout's current state.
class RolloutStateError(Conflict, code="invalid_state"): ...


class RolloutActive(Conflict, code="rollout_active"): ...


class NoProduction(Conflict, code="no_production"): ...


class GateFailing(Conflict, code="gate_failing"): ...
