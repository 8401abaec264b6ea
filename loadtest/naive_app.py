"""Baseline for the benchmark: the obvious FastAPI app, one ``session.run`` per request, no batching.

Same featurizer, same ONNX file, same uvicorn (uvloop + httptools) as the real service, so the difference is
the serving design. Run: ``python -m loadtest.naive_app --version-dir model_repo/ad-ctr/1 --port 8001``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


class Candidate(BaseModel):
    ad_id: str
    features: dict[str, Any] = {}


class CtrRequest(BaseModel):
    context: dict[str, Any] = {}
    candidates: list[Candidate]


def create_naive_app(version_dir: Path, intra_op_threads: int = 1) -> FastAPI:
    from app.runtime.ort_options import cpu_session
    from app.tasks.ctr.features import CtrFeaturizer

    featurizer = CtrFeaturizer.load(version_dir / "preprocess.json")
    session = cpu_session(version_dir / "model.onnx", intra_op_threads=intra_op_threads)
    app = FastAPI()

    @app.post("/v1/ads/ctr")
    def score(req: CtrRequest) -> dict[str, Any]:  # sync: FastAPI runs it in its thread pool
        rows = [{**req.context, **c.features} for c in req.candidates]
        (pctr,) = session.run(["pctr"], featurizer.transform_records(rows))
        scores = [{"ad_id": c.ad_id, "pctr": float(p)} for c, p in zip(req.candidates, pctr.reshape(-1), strict=True)]
        return {"model": "ad-ctr", "version": int(version_dir.name), "scores": scores}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--version-dir", type=Path, required=True)
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--intra-op-threads", type=int, default=1)
    args = p.parse_args()
    app = create_naive_app(args.version_dir, args.intra_op_threads)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
