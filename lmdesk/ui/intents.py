"""Typed requests from the window to the worker that owns the model.

Each request is a small frozen dataclass; the worker has one handler per
class (``EngineWorker._op_<name>``, checked when :mod:`lmdesk.ui.worker` is
imported, so a misspelt request fails at start-up, not as "Something went
wrong" in front of a class). The fields are the handler's arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import ClassVar

from ..engine.conversation import Conversation, ToolCall
from ..engine.sampling import SamplingSettings


@dataclass(frozen=True)
class Intent:
    name: ClassVar[str] = ""  # the handler's name: EndTurn → "end_turn"
    # after it the chart shows the next token again: a clicked chip stays selected only
    # until the document moves on, so the chart's next click appends (replacing an earlier
    # token is only ever asked for on that token's own chart)
    back_to_the_end: ClassVar[bool] = False
    long: ClassVar[bool] = False  # long work: the window offers Cancel while it runs
    # a look at the model that leaves the document as it is: the worker answers it without
    # saying it is busy and without sending the document again (the window asks for these
    # as it draws, and they take milliseconds)
    quiet: ClassVar[bool] = False
    # False: a look at the model that leaves the document as it is (no new state is sent after it)
    changes_document: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        ALL[cls.name] = cls

    def arguments(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]


ALL: dict[str, type[Intent]] = {}


# -- the model ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadModel(Intent):
    folder: str | None  # None: the default model
    threads: int | None = None
    chat_template: str | None = None
    back_to_the_end = True


@dataclass(frozen=True)
class PrepareDefault(Intent):
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class ImportGguf(Intent):
    path: str
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class UseFamilyTemplate(Intent):
    template: str  # a name from lmdesk.engine.family_templates
    back_to_the_end = True


# -- the document ------------------------------------------------------------------------
@dataclass(frozen=True)
class EndTurn(Intent):
    text: str
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class LoadText(Intent):
    text: str
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class SaveConversation(Intent):
    path: str


@dataclass(frozen=True)
class OpenConversation(Intent):
    path: str
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class AppendToken(Intent):
    token_id: int


@dataclass(frozen=True)
class Replace(Intent):
    index: int
    token_id: int


@dataclass(frozen=True)
class ReplaceText(Intent):
    index: int
    text: str


@dataclass(frozen=True)
class Truncate(Intent):
    n: int
    back_to_the_end = True


@dataclass(frozen=True)
class Undo(Intent):
    back_to_the_end = True
    long = True  # cheap, unless it has to compute the document again


@dataclass(frozen=True)
class ResetResponse(Intent):
    back_to_the_end = True


@dataclass(frozen=True)
class NewConversation(Intent):
    back_to_the_end = True


@dataclass(frozen=True)
class SetSystemPrompt(Intent):
    text: str | None
    back_to_the_end = True


# -- tools and the conversation as data --------------------------------------------------------
@dataclass(frozen=True)
class SetTools(Intent):
    tools: tuple  # JSON-schema function definitions (dicts); () to remove them
    long = True  # a conversation under way is read again


@dataclass(frozen=True)
class AddToolCall(Intent):
    call: ToolCall
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class AddToolResult(Intent):
    content: str
    function: str  # the function's name; "" for the call waiting for its result
    back_to_the_end = True
    long = True


@dataclass(frozen=True)
class ShowConversation(Intent):
    """The conversation as data, for the JSON window."""
    quiet = True


@dataclass(frozen=True)
class ApplyConversation(Intent):
    conversation: Conversation
    back_to_the_end = True
    long = True


# -- settings and the model writing --------------------------------------------------------
@dataclass(frozen=True)
class SetSettings(Intent):
    settings: SamplingSettings


@dataclass(frozen=True)
class SetK(Intent):
    k: int


@dataclass(frozen=True)
class Step(Intent):
    greedy: bool
    back_to_the_end = True


@dataclass(frozen=True)
class ExplainNext(Intent):
    """What the sampling settings do to the next token's distribution (for the Sampling tab)."""
    revision: int  # the document it is asked for: an answer about an older one is not shown
    quiet = True


@dataclass(frozen=True)
class ExplainAt(Intent):
    """What the sampling settings would have done where token ``position`` was predicted (a clicked chip)."""
    position: int  # P, 1 … n - 1: the prediction of token P
    revision: int
    long = True  # the first time, the inspection graph that gives the logits there is loaded
    changes_document = False


@dataclass(frozen=True)
class Inspect(Intent):
    """Look inside the model as it predicts token ``position`` (the Inside tab)."""
    position: int  # P: the model's state at token P - 1
    revision: int  # the document it is asked for
    long = True  # the first look loads the inspection graph; a long document's cache takes a while
    changes_document = False


# -- a second model, to compare ---------------------------------------------------------------
@dataclass(frozen=True)
class LoadSecond(Intent):
    """Load a second model beside the first and score the document's text with both."""
    folder: str
    revision: int
    long = True
    changes_document = False


@dataclass(frozen=True)
class CloseSecond(Intent):
    changes_document = False


@dataclass(frozen=True)
class Compare(Intent):
    """Score the document's text with the second model too, and align the two by the text."""
    revision: int
    long = True
    changes_document = False


@dataclass(frozen=True)
class Generate(Intent):
    max_new_tokens: int
    back_to_the_end = True
    long = True
