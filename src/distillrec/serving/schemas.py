"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI docs).

Types and shapes are checked here; numeric bounds (k, batch sizes) are checked by ``ServingRecommender``, the one
place that knows the run's size and the limits, and come back as 422 like any validation error.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

#: an original id as in ``ids.json``; JSON numbers are accepted and read as their decimal text
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)] | StrictInt


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Strict):
    users: list[Id] = Field(min_length=1, description="original user ids (at most 256 per request)")
    k: int = Field(10, description="items per user, 1 to min(1000, number of items)")
    exclude_seen: bool = Field(True, description="leave out items the user saw in the run's data")


class Pair(Strict):
    user: Id
    item: Id


class PredictRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, description="(user, item) pairs of original ids (at most 10,000)")


class RecommendedItem(BaseModel):
    rank: int
    item: str
    score: float | None
    title: str | None = None


class Recommendations(BaseModel):
    user: str
    cold_start: bool = Field(description="true: unknown user, the items are the most popular ones")
    k: int
    items: list[RecommendedItem]


class BatchRecommendations(BaseModel):
    model: str
    results: list[Recommendations]


class RatingPrediction(BaseModel):
    user: str
    item: str
    rating: float | None
    title: str | None = None


class Predictions(BaseModel):
    model: str
    predictions: list[RatingPrediction]


class Health(BaseModel):
    status: str
    model: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    version: str | None
    params: int
    metrics: dict[str, Any]


class Error(BaseModel):
    detail: Any = Field(description="a message, or pydantic's list of validation errors")
