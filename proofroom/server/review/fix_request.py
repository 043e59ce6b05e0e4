"""Reading a fix request: which engine and model, its parameters, and a drafted prompt.

Nothing is silently replaced: an unknown field, engine, model or colour is a 400 naming
what is allowed, an engine this server cannot run is a 422 saying why, and a parameter an
engine has no use for (a colour for the fill) is refused rather than dropped.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Map

from ...shared import schema
from ...shared.errors import BadRequest
from ..bodies import check_fields
from ..engines import Engine, EngineError, InpaintParams
from ..engines.recolor import color_from_prompt, parse_color
from ..engines.registry import ENGINES, engine_class, models_of

LIMITS = {
    "steps": (1, 150),
    "strength": (0.0, 1.0),
    "guidance": (0.0, 30.0),
    "variants": (1, 8),
    "priority": (-10, 10),
}
MAX_PROMPT_CHARS = 2000
#: A drafted prompt is a short instruction, not the thread.
MAX_DRAFT_CHARS = 300
#: What a fix request may hold; anything else is a 400 naming these.
FIELDS = frozenset(
    {*LIMITS, "prompt", "negative_prompt", "seed", "mask", "region", "engine", "model", "color"}
)


class EngineUnavailable(EngineError):
    """A known engine that cannot run on this server (the message says why)."""

    code = "engine_unavailable"


@dataclass(frozen=True)
class EngineChoice:
    """The engine (and model) a request runs on."""

    name: str
    model: str | None
    cls: type[Engine]

    @property
    def lane(self) -> str:
        return "hosted" if self.cls.hosted else "local"


@dataclass(frozen=True)
class FixRequest:
    """A validated fix request (before its mask is read)."""

    engine: EngineChoice
    params: InpaintParams
    variants: int
    priority: int


def parse_fix_request(body: dict[str, Any], pin: Map[Any], engine: EngineChoice) -> FixRequest:
    """The request's parameters for ``engine`` (see :func:`choose_request_engine`)."""
    params, variants, priority = _parse_params(body, pin, engine)
    return FixRequest(engine, params, variants, priority)


def choose_request_engine(
    body: dict[str, Any], settings: Any, default_engine: str, default_model: str | None
) -> EngineChoice:
    """The request's ``engine`` and ``model``, or the server's default engine and its model.

    Checks every field's name first (a typo is a 400 before anything else is looked at).
    """
    check_fields(body, FIELDS)
    known = list(ENGINES["edit"])
    name = body.get("engine")
    if name is None:
        name = default_engine
    elif not isinstance(name, str) or name not in ENGINES["edit"]:
        text = name if isinstance(name, str) else str(name)
        shown = text if len(text) <= 64 else text[:64] + "..."
        raise BadRequest(
            f"unknown engine {shown!r}; engines: {', '.join(known)} (GET /api/engines says"
            " which run on this server)"
        )
    try:
        cls = engine_class("edit", name)
    except EngineError as exc:
        raise EngineUnavailable(f"the {name} engine is not available here: {exc.message}") from None
    reason = cls.availability(settings)
    if reason is not None:
        raise EngineUnavailable(f"the {name} engine is not available on this server: {reason}")
    models = models_of(cls, settings)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"model must be the name of one of the {name} engine's models")
    if not models:
        if model is not None:
            raise BadRequest(f"the {name} engine takes no model; leave model out")
        return EngineChoice(name, None, cls)
    if model is None:
        model = default_model if name == default_engine and default_model in models else models[0]
    elif model not in models:
        shown = model if len(model) <= 200 else model[:200] + "..."
        raise BadRequest(
            f"unknown model {shown!r} for the {name} engine; models: {', '.join(models)}"
        )
    return EngineChoice(name, model, cls)


def _parse_params(
    body: dict[str, Any], pin: Map[Any], choice: EngineChoice
) -> tuple[InpaintParams, int, int]:
    def number(name: str, default: float, kind: type = float) -> Any:
        value = body.get(name, default)
        if value is None:
            value = default
        lo, hi = LIMITS[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not float(value).is_integer())
            or not lo <= value <= hi
            or (name == "strength" and value == 0)
        ):
            bound = f"more than {lo}" if name == "strength" else f"from {lo}"
            raise BadRequest(f"{name} must be a {kind.__name__} {bound} to {hi}")
        return kind(value)

    prompt = body.get("prompt")
    if prompt is None:
        prompt = draft_prompt(pin)
    negative = "" if body.get("negative_prompt") is None else body["negative_prompt"]
    for name, text in (("prompt", prompt), ("negative_prompt", negative)):
        if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
            raise BadRequest(f"{name} must be text of at most {MAX_PROMPT_CHARS} characters")
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**32)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadRequest("seed must be an integer from 0 to 4294967295")
    params = InpaintParams(
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        steps=number("steps", 20, int),
        strength=number("strength", 1.0),
        guidance=number("guidance", 7.5),
        color=_color(body, prompt, choice),
        model=choice.model,
    )
    return params, number("variants", 1, int), number("priority", 0, int)


def _color(body: dict[str, Any], prompt: str, choice: EngineChoice) -> str | None:
    """The target colour as ``#rrggbb`` for an engine that uses one; None for the others."""
    color = body.get("color")
    if "color" not in choice.cls.params:
        if color is not None:
            raise BadRequest(f"the {choice.name} engine takes no color; leave color out")
        return None
    if color is not None:
        if not isinstance(color, str) or len(color) > 64:
            raise BadRequest("color must be a hex colour (#2e7d32) or a CSS colour name")
        return parse_color(color)
    found = color_from_prompt(prompt)
    if found is None:
        raise BadRequest(
            f"the {choice.name} engine needs a colour: give color (a hex colour like #2e7d32"
            ' or a CSS colour name) or name one in the prompt ("make the jacket green")'
        )
    return found


# -- the drafted prompt ---------------------------------------------------------------------

_MENTION = re.compile(r"@[\w.-]+(?:\s+\([^)]*\))?(?:\s+link\b)?", re.UNICODE)
_SENTENCES = re.compile(r"[^.!?\n]+[.!?]*")
#: Sentences that talk to people rather than about the picture.
_CHATTER = re.compile(
    r"\b(?:take this(?: one)?|pick this up|look at this|handle this|on it|any (?:update|news)"
    r"|what do you think|wdyt|thoughts|sounds good|makes sense)\b"
    r"|^(?:thanks|thank you|thx|ok|okay|agreed|\+1|sure|yes|no|yep|nope|lgtm|done|great|nice"
    r"|cool|perfect|love it|same|me too|good catch)\W*$",
    re.IGNORECASE,
)
#: Words that open a request without saying what to make.
_FILLER = re.compile(
    r"^(?:(?:also|and|so|then|plus|but|oh|hey|hi|ok|okay|please|pls|maybe|just|i think"
    r"|agreed|yes|yep|sure|right|exactly|good point"
    r"|i'd like(?: to)?|i would like(?: to)?|we need to|we should|can we|could we|can you"
    r"|could you|would you|let's|let us)\b[\s,:;-]*)+",
    re.IGNORECASE,
)
#: Politeness that closes a request.
_CLOSING = re.compile(r"[\s,;:-]*\b(?:please|pls|thanks|thank you|thx)\W*$", re.IGNORECASE)


def draft_prompt(pin: Map[Any]) -> str:
    """A short prompt of what to make, from the pin's words and its thread (editable).

    Keeps the sentences that describe the picture; drops @mentions, questions to people
    ("can you take this one?"), acknowledgements and filler ("Also", "can we"); the browser's
    fix form drafts the same way (panels/fix.js ``draftPrompt``).
    """
    texts = [str(pin.get(schema.Pin.TEXT) or "")]
    thread = pin.get(schema.Pin.THREAD)
    if isinstance(thread, Array):
        for comment in thread:
            if isinstance(comment, Map) and not comment.get(schema.Comment.DELETED):
                texts.append(str(comment.get(schema.Comment.TEXT) or ""))
    return draft_from_texts(texts)


def draft_from_texts(texts: list[str]) -> str:
    """:func:`draft_prompt` on plain texts (the pin's first, then its replies)."""
    kept: list[str] = []
    for text in texts:
        for sentence in _SENTENCES.findall(_MENTION.sub(" ", text)):
            core = " ".join(sentence.split()).strip(" .!?,;:-")
            if not core or _CHATTER.search(core):
                continue
            core = _CLOSING.sub("", _FILLER.sub("", core)).strip(" .!?,;:-")
            if len(core) < 3 or core.lower() in (k.lower() for k in kept):
                continue
            kept.append(core[0].upper() + core[1:])
    draft = ". ".join(kept)
    if len(draft) > MAX_DRAFT_CHARS:
        draft = draft[:MAX_DRAFT_CHARS].rsplit(" ", 1)[0]
    return draft
