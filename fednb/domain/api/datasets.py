"""Routes for datasets: their public metadata and their synthetic mocks."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import AnyCaller, TheDomain
from fednb.domain.api.errors import CONFLICT, RESPONSES
from fednb.domain.data import mock_review
from fednb.models import Dataset

router = APIRouter(tags=["datasets"], responses=RESPONSES)


@router.get("/v1/datasets", response_model=list[Dataset])
async def list_datasets(c: AnyCaller, domain: TheDomain) -> list[Dataset]:
    return await run_in_threadpool(domain.datasets)


@router.get("/v1/datasets/{name}", response_model=Dataset)
async def get_dataset(name: str, c: AnyCaller, domain: TheDomain) -> Dataset:
    return await run_in_threadpool(domain.dataset, name)


@router.get("/v1/datasets/{name}/mock", responses=CONFLICT)
async def get_mock(name: str, c: AnyCaller, domain: TheDomain) -> dict:
    """The synthetic mock: ``{"columns", "dtypes", "data"}`` (rows as lists); 409 while it may not be
    served (waiting for the owner's approval, or over the policy's risk limit)."""
    return await run_in_threadpool(mock_review.mock_json, domain, name, owner=c.role == "owner")
