"""The causal tokenizer's frame rule: a clip of T frames is frame 0 on its own, then groups of the
tokenizer's temporal factor f, so T = 1 + f*k (f = 4: 1, 5, 9, 13, 17, ...; f = 1: any T >= 1).

The one place the rule is written; the factor always comes from the tokenizer (its config or export),
never assumed: the data layer takes any T >= 1 and the checks sit where the tokenizer is known.
"""

from __future__ import annotations


def fits_frame_rule(num_frames: int, temporal_factor: int) -> bool:
    """True when ``num_frames`` = 1 + temporal_factor * k for some k >= 0."""
    return num_frames >= 1 and (num_frames - 1) % temporal_factor == 0


def frames_at_most(num_frames: int, temporal_factor: int) -> int:
    """The largest 1 + temporal_factor * k that is <= ``num_frames`` (>= 1): 16 -> 13 and 17 -> 17 for 4."""
    return 1 + temporal_factor * max(0, (num_frames - 1) // temporal_factor)


def latent_frames(num_frames: int, temporal_factor: int) -> int:
    """Latent frames of a clip that fits the rule: 1 + k."""
    return 1 + (num_frames - 1) // temporal_factor


def frame_rule(temporal_factor: int) -> str:
    """The rule in words, for messages: ``"1 + 4k (1, 5, 9, 13, ...)"``."""
    if temporal_factor == 1:
        return "any number >= 1"
    examples = ", ".join(str(1 + temporal_factor * k) for k in range(4))
    return f"1 + {temporal_factor}k ({examples}, ...)"
