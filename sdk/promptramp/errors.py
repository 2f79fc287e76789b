"""Exceptions raised by the promptramp client."""


class PromptrampError(Exception):
    """Base class of every error this package raises."""


class MissingVariables(PromptrampError):
    """A render was asked for without a value for every placeholder of the prompt."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"missing variables: {', '.join(names)}")
        self.names = names


class PromptUnavailable(PromptrampError):
    """No snapshot holds the prompt and the caller supplied no default for it."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"prompt {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason
