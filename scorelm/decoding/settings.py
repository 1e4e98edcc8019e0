"""How pieces are sampled: one typed object, as transformers' GenerationConfig is for text."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from scorelm.decoding.rules import MODES, OFF, RULE_NAMES


@dataclass(frozen=True)
class SamplingSettings:
    """What stays the same for every piece of a run; what each call decides (the prompt, the
    measures, the melody, the seed, the token budget) is given to generate_texts beside it."""
    constrain: bool = True  # the grammar constraint: every sample a valid score
    rules: str = OFF  # the voice-leading rules' strength: rules.MODES
    skip_rules: tuple[str, ...] = ()  # rules switched off (rules.RULE_NAMES)
    particles: int = 1  # sequences sampled side by side for each piece (particles.sample_particles)
    temperature: float = 1.0
    top_k: int = 0  # sample from the k likeliest tokens (0: all)
    top_p: float = 1.0  # nucleus sampling mass
    num_voices: int = 4
    voice_ranges: tuple | None = None  # per voice (low, high) MIDI numbers the decoder keeps it in
    parts: tuple | None = None  # the layout of parts and staves a new piece states (None: a part a voice)
    stop_at_end: bool = True  # False: every row runs its whole budget (for timing decoding alone)

    def __post_init__(self):
        if self.rules not in MODES:
            raise ValueError(f"rules must be one of {MODES}, not {self.rules!r}")
        unknown = set(self.skip_rules) - set(RULE_NAMES)
        if unknown:
            raise ValueError(f"no such rules: {sorted(unknown)}")
        if self.particles < 1 or not 0 < self.temperature < math.inf or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"settings out of range: {self}")
        object.__setattr__(self, "skip_rules", tuple(self.skip_rules))
        if self.voice_ranges is not None:
            object.__setattr__(self, "voice_ranges", tuple(tuple(r) if r else None for r in self.voice_ranges))
        if self.parts is not None:
            object.__setattr__(self, "parts", tuple(tuple(staves) for staves in self.parts) or None)

    def replace(self, **changes) -> "SamplingSettings":
        return dataclasses.replace(self, **changes)

    def in_effect(self) -> "SamplingSettings":
        """These settings as they are applied: the rules off for a layout with several voices on a
        staff (a piano's: the rules are four-part writing's), and one particle where nothing
        weighs them (no rules, or no constraint: every particle as likely as the next)."""
        rules = OFF if self.parts else self.rules
        particles = 1 if rules == OFF or not self.constrain else self.particles
        return self.replace(rules=rules, particles=particles)

    @property
    def enabled_rules(self) -> tuple[str, ...]:
        return tuple(name for name in RULE_NAMES if name not in self.skip_rules)
