"""The classification result type shared by classifiers, smoothers and publishers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_CLASS = -1
"""``class_ids`` value of an empty slot (a result dropped by the threshold); its score is 0."""


@dataclass(eq=False, slots=True)
class Classifications:
    """Top-K classes for each of B inputs (whole frames or crops), best first.

    ``class_ids`` (B, K) int32 and ``scores`` (B, K) float32 are fixed-width so that a batch is
    one array; slots dropped by a score threshold hold :data:`NO_CLASS` and 0.0 and always come
    after the kept ones. ``labels[i]`` lists the names of row ``i``'s kept classes only, so
    ``len(labels[i])`` is the number of results for input ``i``. ``multi_label`` tells whether
    the scores are independent sigmoids (several classes may apply) or one softmax.
    """

    class_ids: np.ndarray
    scores: np.ndarray
    labels: list[list[str]]
    multi_label: bool = False

    def __post_init__(self) -> None:
        # Normalise dtypes/shapes once here so that consumers never have to.
        self.class_ids = np.asarray(self.class_ids, np.int32)
        if self.class_ids.ndim == 1:
            self.class_ids = self.class_ids[None]
        if self.class_ids.ndim != 2:
            raise ValueError(f"class_ids must be (B, K), got shape {self.class_ids.shape}")
        self.scores = np.asarray(self.scores, np.float32).reshape(self.class_ids.shape)
        self.labels = [list(row) for row in self.labels]
        if len(self.labels) != len(self.class_ids):
            raise ValueError(f"{len(self.labels)} label rows for {len(self.class_ids)} inputs")
        counts = self.valid.sum(axis=1)
        for i, row in enumerate(self.labels):
            if len(row) != counts[i]:
                raise ValueError(f"row {i}: {len(row)} labels for {counts[i]} kept classes")

    @classmethod
    def empty(cls, batch: int = 0, k: int = 0, multi_label: bool = False) -> Classifications:
        """``batch`` inputs with nothing kept (or no inputs at all)."""
        return cls(
            np.full((batch, k), NO_CLASS, np.int32),
            np.zeros((batch, k), np.float32),
            [[] for _ in range(batch)],
            multi_label,
        )

    def __len__(self) -> int:
        return len(self.class_ids)

    @property
    def k(self) -> int:
        """Slots per input (the top-k the classifier ran with, at most the number of classes)."""
        return self.class_ids.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """(B, K) mask of the slots that hold a kept class."""
        return self.class_ids != NO_CLASS

    def row(self, i: int) -> list[tuple[int, float, str]]:
        """``(class_id, score, label)`` of input ``i``'s kept classes, best first."""
        n = len(self.labels[i])
        return [
            (int(c), float(s), name)
            for c, s, name in zip(
                self.class_ids[i, :n], self.scores[i, :n], self.labels[i], strict=True
            )
        ]

    def best(self, i: int = 0) -> tuple[int, float, str] | None:
        """Input ``i``'s top class, or None when the threshold dropped all of them."""
        kept = self.row(i)
        return kept[0] if kept else None

    def __repr__(self) -> str:
        rows = []
        for i in range(min(len(self), 3)):
            rows.append("[" + ", ".join(f"{n}:{s:.2f}" for _, s, n in self.row(i)[:3]) + "]")
        more = ", ..." if len(self) > 3 else ""
        kind = "multi-label" if self.multi_label else "softmax"
        return f"Classifications(b={len(self)}, k={self.k}, {kind}: {', '.join(rows)}{more})"
