"""Routes for datasets: their public metadata and their synthetic mocks."""

import json

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import AnyCaller, TheDomain
from fednb.domain.api.errors import RESPONSES
from fednb.domain.domain import Domain
from fednb.errors import NotFound
from fednb.models import Dataset

router = APIRouter(tags=["datasets"], responses=RESPONSES)


@router.get("/v1/datasets", response_model=list[Dataset])
async def list_datasets(c: AnyCaller, domain: TheDomain) -> list[Dataset]:
    return await run_in_threadpool(domain.datasets)


@router.get("/v1/datasets/{name}", response_model=Dataset)
async def get_dataset(name: str, c: AnyCaller, domain: TheDomain) -> Dataset:
    return await run_in_threadpool(domain.dataset, name)


@router.get("/v1/datasets/{name}/mock")
async def get_mock(name: str, c: AnyCaller, domain: TheDomain) -> dict:
    """The synthetic mock: ``{"columns", "dtypes", "data"}`` (rows as lists)."""
    return await run_in_threadpool(_mock_json, domain, name)


def _mock_json(domain: Domain, name: str) -> dict:
    import pandas as pd

    path = domain.mock_path(name)
    if not path.exists():
        raise NotFound(f"dataset {name!r} has no mock")
    df = pd.read_parquet(path)
    return {"columns": list(df.columns), "dtypes": {c: str(t) for c, t in df.dtypes.items()},
            "data": json.loads(df.to_json(orient="values", date_format="iso"))}
