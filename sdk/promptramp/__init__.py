"""promptramp: resolve prompts locally from a cached snapshot and report their outcomes."""

import logging

from .client import Client
from .errors import MissingVariables, PromptrampError, PromptUnavailable
from .events import EventCounts, Outcome
from .langfuse_link import langfuse_client, link_generation
from .redaction import redact, redact_text
from .result import ResolvedPrompt
from .shadow import ShadowCounts
from .snapshot import Snapshot, UnsupportedFormat

logging.getLogger("promptramp").addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "EventCounts",
    "MissingVariables",
    "Outcome",
    "PromptUnavailable",
    "PromptrampError",
    "ResolvedPrompt",
    "ShadowCounts",
    "Snapshot",
    "UnsupportedFormat",
    "langfuse_client",
    "link_generation",
    "redact",
    "redact_text",
]
