"""Langfuse: a client that redacts secrets before anything leaves the process, and the link from
the current generation to the prompt version promptramp served."""

from collections.abc import Callable
from typing import Any

from .redaction import redact
from .result import ResolvedPrompt


def langfuse_client(*, mask: Callable[..., Any] | None = redact, **options: Any) -> Any:
    """A ``langfuse.Langfuse`` client (``options`` are its own) whose ``mask`` is
    `promptramp.redact` unless another is given: API keys, bearer tokens, passwords in URLs,
    e-mail addresses and card numbers are removed from every input, output and metadata before
    they are sent. ``mask=None`` sends them as they are. Raises ImportError without ``langfuse``.
    """
    from langfuse import Langfuse

    return Langfuse(mask=mask, **options)


def link_generation(result: ResolvedPrompt, langfuse: Any = None) -> bool:
    """Put the prompt's name, version, arm and rollout on the current Langfuse generation.

    The generation gets `promptName` = the prompt's name and `promptVersion` = its version (how
    promptramp's Langfuse gate source matches generations), and metadata `promptramp_prompt`,
    `promptramp_version`, `promptramp_arm`, `promptramp_rollout_id`. `langfuse` is a
    `langfuse.Langfuse` client (default: `langfuse.get_client()`). Returns False, doing nothing,
    when the langfuse package is not installed.
    """
    try:
        from langfuse import get_client
        from langfuse.api import Prompt_Chat, Prompt_Text
        from langfuse.model import ChatPromptClient, TextPromptClient
    except ImportError:
        return False
    prompt: ChatPromptClient | TextPromptClient | None = None
    if result.version is not None:
        body = {"name": result.name, "version": result.version, "config": result.config}
        body |= {"labels": [], "tags": []}
        if result.kind == "chat":
            prompt = ChatPromptClient(Prompt_Chat.model_validate(body | {"prompt": result.messages}))
        else:
            prompt = TextPromptClient(Prompt_Text.model_validate(body | {"prompt": result.template}))
    (langfuse or get_client()).update_current_generation(
        prompt=prompt,
        metadata={
            "promptramp_prompt": result.name,
            "promptramp_version": result.version,
            "promptramp_arm": result.arm,
            "promptramp_rollout_id": result.rollout_id,
        },
    )
    return True
