"""Peer (a): the same model behind a plain FastAPI app on uvicorn, written the way the FastAPI docs teach.

A pydantic request and response model, a sync ``def`` endpoint (FastAPI runs it in its thread pool, so the
sklearn call does not block the event loop), the model loaded once in the lifespan, one uvicorn worker.
Access logging is off, as modelwire's is, so the peer is not slowed by a stdout write per request.

    python bench/peer_fastapi.py --port 8100 --models-dir bench/.peers/data/models
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_model import PeerSentimentModel, latest_version

MODELS_DIR = Path("bench/.peers/data/models")


class PredictRequest(BaseModel):
    text: str


class PredictResponse(BaseModel):
    sentiment: Literal["positive", "negative"]
    confidence: float


state: dict[str, PeerSentimentModel] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state["model"] = PeerSentimentModel(latest_version(MODELS_DIR))
    yield
    state.clear()


app = FastAPI(title="sentiment (plain FastAPI peer)", lifespan=lifespan)


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    (result,) = state["model"].predict([request.text])
    return PredictResponse(**result)


def main() -> None:
    global MODELS_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args()
    MODELS_DIR = args.models_dir.resolve()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
