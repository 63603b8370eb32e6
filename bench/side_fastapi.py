"""Side-by-side peer: a user's scikit-learn file behind plain FastAPI + uvicorn, as the FastAPI docs teach.

The model file (``$BENCH_MODEL``, a ``.joblib`` pipeline) is loaded once in the lifespan; a sync ``def``
endpoint (FastAPI runs it in its thread pool) answers ``{"text": ...}`` with the label and the class
probabilities, the same two scikit-learn calls (``predict``, ``predict_proba``) modelwire's scikit-learn
runtime makes. One uvicorn worker (uvicorn[standard]: uvloop, httptools), access log off.

    BENCH_MODEL=model.joblib python bench/side_fastapi.py --port 8100
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import joblib
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class PredictRequest(BaseModel):
    text: str


class PredictResponse(BaseModel):
    label: str
    probabilities: list[float]


state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state["model"] = joblib.load(os.environ["BENCH_MODEL"])
    yield
    state.clear()


app = FastAPI(title="side-by-side FastAPI peer", lifespan=lifespan)


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    model = state["model"]
    rows = [request.text]
    label = model.predict(rows)[0]
    probabilities = model.predict_proba(rows)[0]
    return PredictResponse(label=str(label), probabilities=probabilities.tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
