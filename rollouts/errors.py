from core.errors import Conflict, NotFound


class RolloutNotFound(NotFound, code="rollout_not_found"): ...


class WebhookNotFound(NotFound, code="webhook_not_found"): ...


# The action is not allowed in the rollout's current state.
class RolloutStateError(Conflict, code="invalid_state"): ...


# The rollout is no longer in the state (or at the step) the request expected: someone acted first.
class StaleRequest(Conflict, code="stale_request"): ...


class RolloutActive(Conflict, code="rollout_active"): ...


class NoProduction(Conflict, code="no_production"): ...


class GateFailing(Conflict, code="gate_failing"): ...


# A start before every required check has passed.
class ChecksPending(Conflict, code="checks_pending"): ...
