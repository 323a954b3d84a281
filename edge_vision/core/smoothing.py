"""Temporal smoothing of per-class scores over a frame stream (pure numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["TemporalSmoother"]


class TemporalSmoother:
    """Exponential moving average of a whole-frame classifier's per-class scores.

    ``smoothed = alpha * new + (1 - alpha) * smoothed``; the first frame after construction or
    :meth:`reset` is taken as is. Feed it the full score vector (probabilities, not the top-k):
    a class outside one frame's top-k must still decay rather than vanish, and an average of
    probability vectors is again one. ``alpha`` 1 disables smoothing; about ``2 / alpha - 1``
    frames make up most of the memory (e.g. alpha 0.2 ~ 9 frames), so a label needs several
    frames of evidence to take over and a one-frame glitch does not flip it.
    """

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._state: np.ndarray | None = None
        self.frames = 0
        """Frames averaged since the last reset."""

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Blend in one frame's scores, shape (C,) or (1, C); returns the smoothed (C,) copy."""
        x = np.asarray(scores, np.float32)
        if x.ndim == 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 1:
            raise ValueError(f"expected the scores of one frame, (C,) or (1, C); got {x.shape}")
        if self._state is None:
            self._state = x.copy()
        elif self._state.shape != x.shape:
            raise ValueError(
                f"{x.shape[0]} scores after {self._state.shape[0]}: reset() on a model change"
            )
        else:
            # In place: no per-frame allocation for a 1000-class vector at video rate.
            self._state *= np.float32(1.0 - self.alpha)
            self._state += np.float32(self.alpha) * x
        self.frames += 1
        return self._state.copy()

    @property
    def value(self) -> np.ndarray | None:
        """The current smoothed scores (a copy), or None before the first update."""
        return None if self._state is None else self._state.copy()

    def reset(self) -> None:
        """Forget the history, e.g. on a scene cut, a new stream or a model change."""
        self._state = None
        self.frames = 0
