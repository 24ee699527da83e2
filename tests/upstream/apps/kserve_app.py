"""A KServe Python model server with one model that fails on a negative input.

KServe binds its REST server to 0.0.0.0; the tests listen on loopback only, so this app narrows the
bind address before the server starts (nothing else of KServe is changed).
"""

import argparse

import kserve.model_server
from kserve import Model, ModelServer
from kserve.protocol.rest.server import RESTServer


class LoopbackRESTServer(RESTServer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = "127.0.0.1"


class Iris(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def predict(self, payload: dict, headers: dict | None = None) -> dict:
        rows = payload["instances"]
        if any(value < 0 for row in rows for value in row):
            raise RuntimeError("the model failed")
        return {"predictions": [sum(row) % 3 for row in rows]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http_port", type=int, required=True)
    args, _ = parser.parse_known_args()
    kserve.model_server.RESTServer = LoopbackRESTServer
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([Iris("sklearn-iris")])
