"""Enumerations of the contract and the state machines over them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, TypeVar


class Role(StrEnum):
    """A participant's role in one session, from their invite token."""

    #: Sees the canvas and presence; writes nothing.
    VIEWER = "viewer"
    #: Adds pins and replies; edits and resolves their own.
    COMMENTER = "commenter"
    #: Commenter rights, plus fixes, version uploads and cancelling jobs.
    EDITOR = "editor"
    #: Commenter rights, plus decisions on layers.
    APPROVER = "approver"
    #: Everything, including invites, locks and export.
    OWNER = "owner"


class PinStatus(StrEnum):
    """Where a pin's discussion stands."""

    #: Still needs attention.
    OPEN = "open"
    #: Done with (by its author, or by approving its fix).
    RESOLVED = "resolved"


class JobStatus(StrEnum):
    """Lifecycle of one inpaint job."""

    #: Waiting in the queue.
    QUEUED = "queued"
    #: Claimed by a worker.
    RUNNING = "running"
    #: Finished with a layer.
    DONE = "done"
    #: Finished with an error, no layer.
    FAILED = "failed"
    #: Cancelled by an editor, no layer.
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job makes."""

    #: A local change to one picture: a patch layer (fill, recolour, inpaint).
    EDIT = "edit"
    #: A larger picture: a new image revision.
    UPSCALE = "upscale"
    #: A clip made from a still: a new video revision.
    ANIMATE = "animate"


class RevisionKind(StrEnum):
    """What a revision in a session's stack is."""

    #: The uploaded picture (v1).
    ORIGINAL = "original"
    #: A larger picture made from an approved state or an image revision.
    UPSCALE = "upscale"
    #: A short clip made from a still.
    CLIP = "clip"


class RevisionMedia(StrEnum):
    """What a revision shows."""

    IMAGE = "image"
    VIDEO = "video"


class UpscaleEngineName(StrEnum):
    """The upscale engines Proofroom knows."""

    #: Lanczos with a mild unsharp mask (CPU, no weights).
    RESAMPLE = "resample"
    #: A super-resolution model loaded by spandrel (GPU).
    SPANDREL = "spandrel"
    #: A low-denoise diffusion pass over the resampled picture (GPU, optional).
    REFINE = "refine"


class AnimateEngineName(StrEnum):
    """The animate engines Proofroom knows."""

    #: A deterministic camera move encoded with PyAV (CPU, no weights).
    CAMERA = "camera"
    #: A diffusers image-to-video pipeline (GPU).
    DIFFUSERS = "diffusers"
    #: Google's Veo, hosted.
    VEO = "veo"


class EditEngine(StrEnum):
    """The edit engines Proofroom knows (``GET /api/engines`` says which run on a server)."""

    #: Object removal on the CPU: PatchMatch for large holes, Navier-Stokes for thin ones.
    FILL = "fill"
    #: A new colour for the masked object, keeping its shading (CPU).
    RECOLOR = "recolor"
    #: OpenCV's inpainting (the default before fill; kept for existing settings).
    CLASSICAL = "classical"
    #: A diffusers inpaint pipeline (GPU, or slowly on the CPU).
    DIFFUSION = "diffusion"
    #: Google's Gemini image models ("Nano Banana"), hosted.
    GEMINI = "gemini"
    #: OpenAI's image edits, hosted.
    OPENAI = "openai"


class Decision(StrEnum):
    """An approver's decision on a layer or a revision."""

    #: The version is accepted.
    APPROVE = "approve"
    #: The version needs another round.
    REQUEST_CHANGES = "request_changes"
    #: The version is refused.
    REJECT = "reject"


class LayerState(StrEnum):
    """A layer's state, derived from the decisions recorded on it."""

    #: No decision yet, or not enough approvals.
    PENDING = "pending"
    #: Enough approvals and no less favourable decision.
    APPROVED = "approved"
    #: Someone asked for changes.
    CHANGES_REQUESTED = "changes_requested"
    #: Someone rejected it.
    REJECTED = "rejected"
    #: Another variant of the same fix request was approved: no longer waiting for review.
    SUPERSEDED = "superseded"


class LayerSource(StrEnum):
    """Where a layer came from."""

    #: Made by an inpaint job.
    INPAINT = "inpaint"
    #: Uploaded by an editor.
    UPLOAD = "upload"


#: Allowed status changes; anything else is refused.
PIN_TRANSITIONS: Final[dict[PinStatus, frozenset[PinStatus]]] = {
    PinStatus.OPEN: frozenset({PinStatus.RESOLVED}),
    PinStatus.RESOLVED: frozenset({PinStatus.OPEN}),
}

JOB_TRANSITIONS: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # RUNNING -> QUEUED: a crashed worker's lease expired and the job is retried.
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

#: Least favourable first: a layer's state is the least favourable decision on it.
DECISION_ORDER: Final[tuple[Decision, ...]] = (
    Decision.REJECT,
    Decision.REQUEST_CHANGES,
    Decision.APPROVE,
)


S = TypeVar("S", bound=StrEnum)


def can_transition(table: Mapping[S, frozenset[S]], old: S, new: S) -> bool:
    """Whether a state machine ``table`` allows ``old -> new`` (a no-op change is allowed)."""
    return old == new or new in table.get(old, frozenset())
