"""A FastAPI app instrumented the usual way: two handlers, one of which fails on request."""

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

app = FastAPI()


@app.post("/predict")
def predict(value: int, fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("the model failed")
    return {"label": value % 3}


@app.post("/embed")
def embed(value: int) -> dict:
    return {"vector": [value, value]}


Instrumentator().instrument(app).expose(app)
