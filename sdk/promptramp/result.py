"""What a resolve returns: the prompt version a caller should use right now, and why."""

from dataclasses import dataclass
from typing import Any, Literal

Arm = Literal["baseline", "candidate", "production", "shadow", "override"]
Kind = Literal["text", "chat"]
SHADOW_FIELDS = (
    "version",
    "template",
    "messages",
    "model",
    "config",
    "variables",
    "rendered",
    "unused_variables",
)


@dataclass(slots=True)
class ResolvedPrompt:
    """The server's resolve body, field for field, plus `fallback`.

    `template` is set for text prompts and `messages` for chat prompts. `rendered` and
    `unused_variables` are set when variables were given. `rollout_id` and `bucket` are None for
    arm production; for arm override, `bucket` is None, `rollout_id` is the active rollout's (or
    None) and `override_id` names the override that applied. `fallback` is true when the content
    is a caller-supplied default because no snapshot holds the prompt; such a result has no
    version and is never reported. `event_id` is set when a call with it is reported
    (`Client.score` takes the result to score that call).
    In a shadow step's sample (`shadow_sample`), `shadow` is the candidate to run unseen (arm
    `shadow`), or None with `shadow_error` saying why it could not be rendered.
    Treat it as read-only: it shares `config`, `messages` and `variables` with the snapshot.
    """

    name: str
    version: int | None
    kind: Kind
    template: str | None
    messages: list[dict[str, Any]] | None
    model: str | None
    config: dict[str, Any]
    variables: list[str]
    arm: Arm
    rollout_id: int | None
    bucket: int | None
    sticky: bool
    rendered: str | list[dict[str, Any]] | None = None
    unused_variables: list[str] | None = None
    fallback: bool = False
    stale: bool = False
    shadow: "ResolvedPrompt | None" = None
    shadow_error: dict[str, Any] | None = None
    shadow_sample: bool = False
    override_id: int | None = None
    event_id: str | None = None  # of the last call reported with this result (Client.report)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the server's resolve (or render) answer."""
        body: dict[str, Any] = {"name": self.name, "version": self.version, "kind": self.kind}
        if self.kind == "chat":
            body["messages"] = self.messages
        else:
            body["template"] = self.template
        body.update(
            model=self.model,
            config=self.config,
            variables=self.variables,
            arm=self.arm,
            rollout_id=self.rollout_id,
            bucket=self.bucket,
        )
        if self.shadow is not None:
            shadow = self.shadow.as_dict()
            body["shadow"] = {key: shadow[key] for key in shadow if key in SHADOW_FIELDS}
        if self.override_id is not None:
            body["override_id"] = self.override_id
        body["sticky"] = self.sticky
        if self.rendered is not None:
            body.update(rendered=self.rendered, unused_variables=self.unused_variables)
        if self.shadow_error is not None:
            body["shadow_error"] = self.shadow_error
        if self.stale:
            body["stale"] = True
        return body
