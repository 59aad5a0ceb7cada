"""Planted bugs of ``transformer_concat``: the modality embeddings."""

from __future__ import annotations

import numpy as np

from ._base import Broken, PlantedBug


class _EmbeddingsEdited(Broken):
    """Computes with an edited ``modality_embedding``; the registry holds the right one."""

    def embedding(self, e: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, model, v, t, **kw):
        held = model.params
        if "modality_embedding" in held:
            model.params = {
                **held,
                "modality_embedding": self.embedding(held["modality_embedding"]),
            }
        try:
            return super().forward(model, v, t, **kw)
        finally:
            model.params = held


class EmbeddingsIgnored(_EmbeddingsEdited):
    bug = "transformer-concat-embeddings-ignored"

    def embedding(self, e):
        return np.zeros_like(e)


class EmbeddingsSwapped(_EmbeddingsEdited):
    bug = "transformer-concat-embeddings-swapped"

    def embedding(self, e):
        return e[::-1].copy()


BUGS = (
    PlantedBug(
        "transformer-concat-embeddings-ignored",
        ("transformer_concat",),
        EmbeddingsIgnored,
        "modality_embeddings=True but no embedding added.",
        ("transformer_concat/forward/transformer_concat_default",),
    ),
    PlantedBug(
        "transformer-concat-embeddings-swapped",
        ("transformer_concat",),
        EmbeddingsSwapped,
        "The text embedding added to v and the image embedding to t.",
        ("transformer_concat/forward/transformer_concat_default",),
    ),
)
