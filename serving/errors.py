from core.errors import Conflict, NotFound


class OverrideNotFound(NotFound, code="override_not_found"): ...


# An override with the same match applies already (one per unit, one per attribute value).
class OverrideExists(Conflict, code="override_exists"): ...


class TooManyOverrides(Conflict, code="too_many_overrides"): ...
