"""The like-for-like HTTP floor of ``benchmarks/serve_cpu.py``: a bare FastAPI handler that
parses the request, reads the entity's bytes with one redis.asyncio HMGET, and returns fixed
bytes (the JSON featurestore answers), no decoding.

    BARE_RESPONSE=body.json BARE_REDIS_URL=redis://... BARE_KEY=... BARE_FIELD=... \
        uvicorn benchmarks._bare_redis_fastapi:app --workers N
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import Response

BODY = Path(os.environ["BARE_RESPONSE"]).read_bytes()
KEY = os.environ["BARE_KEY"].encode()
FIELD = os.environ["BARE_FIELD"].encode()
redis = aioredis.Redis.from_url(os.environ["BARE_REDIS_URL"])
app = FastAPI()


@app.post("/v1/features")
async def features(request: Request) -> Response:
    orjson.loads(await request.body())
    (raw,) = await redis.hmget(KEY, FIELD)
    if raw is None:
        raise RuntimeError("the floor read no value: is the data written?")
    return Response(BODY, media_type="application/json")
