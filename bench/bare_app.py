"""The ceiling: a bare FastAPI endpoint that parses the same JSON and returns it with orjson."""

import orjson
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps(body), media_type="application/fhir+json")
