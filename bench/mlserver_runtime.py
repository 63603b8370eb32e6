"""Peer (b): MLServer's custom-runtime way of serving the same model (an ``MLModel`` subclass).

``scripts/bench`` writes a ``model-settings.json`` whose ``implementation`` is
``mlserver_runtime.SentimentRuntime`` and whose ``parameters.uri`` is the trained version folder. Input
``text`` (BYTES, shape [N]) in; ``sentiment`` (BYTES) and ``confidence`` (FP32) out, as modelwire's v2
endpoint answers. With MLServer's adaptive batching on, ``predict`` receives the merged batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_model import PeerSentimentModel


class SentimentRuntime(MLModel):
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json needs parameters.uri (the trained version folder)")
        self._model = PeerSentimentModel(Path(uri))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = self.decode(payload.inputs[0], default_codec=StringCodec)
        results = self._model.predict(texts)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                StringCodec.encode_output("sentiment", [r["sentiment"] for r in results]),
                NumpyCodec.encode_output(
                    "confidence", np.array([r["confidence"] for r in results], dtype=np.float32)
                ),
            ],
        )
