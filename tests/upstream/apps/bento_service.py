"""A BentoML service with one API that fails on a negative input."""

import bentoml


@bentoml.service(name="iris_classifier")
class Classifier:
    @bentoml.api
    def classify(self, value: int) -> int:
        if value < 0:
            raise RuntimeError("the model failed")
        return value % 3
