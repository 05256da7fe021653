"""The HTTP floor of ``benchmarks/online_lookup.py``: a bare FastAPI handler that parses
the request and returns fixed bytes (the same JSON featurestore answers), no lookup.

    BARE_RESPONSE=/path/to/body.json uvicorn benchmarks._bare_fastapi:app --workers N
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

BODY = Path(os.environ["BARE_RESPONSE"]).read_bytes()
app = FastAPI()


@app.post("/v1/features")
async def features(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(BODY, media_type="application/json")
