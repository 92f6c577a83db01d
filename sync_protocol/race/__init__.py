"""The pure live race model: positions, gaps at the same point, groups, checkpoints, alerts.

Sans-IO like the rest of the package. The edge relay scores its races with it, the
officials' console can score a race from the cloud's live stream with it, and both see
the same standings. Start at :class:`~sync_protocol.race.scoring.RaceScorer`.
"""

from .scoring import RaceScorer, ScoringSettings

__all__ = ["RaceScorer", "ScoringSettings"]
