"""Temporal heads: small models that turn a window of per-frame CNN features into one fight logit.

A registry in the style of timm: :func:`create_head` builds a head by name, :func:`list_heads` names them.
Every head maps ``(B, T, D)`` float features to ``(B,)`` logits (label 1 = fight) and remembers its
constructor arguments in :attr:`TemporalHead.config`, with defaults filled in, so a saved member is
rebuilt exactly with ``create_head(**head.config)`` and its state_dict.

``motion=True`` adds a motion stream computed inside the module: frame-to-frame feature differences
``x[:, 1:] - x[:, :-1]`` (zero for the first frame, so the length stays ``T``), layer-normalised on
their own (differences are an order of magnitude smaller than the features) and concatenated with the
layer-normalised appearance features. Fights are motion; a static scene has near-zero differences.

Sizes are deliberately moderate (hidden 64-128): the training sets are a few hundred clips.
"""

# each module registers its heads when imported
from nexara.heads import forest, pooled, sequence  # noqa: F401
from nexara.heads.base import FrameInput, TemporalHead, frame_differences
from nexara.heads.factory import create_head, head_defaults, list_heads, register_head

__all__ = [
    "FrameInput",
    "TemporalHead",
    "create_head",
    "frame_differences",
    "head_defaults",
    "list_heads",
    "register_head",
]
