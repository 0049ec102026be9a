import httpx
import pytest
from sqlalchemy.orm import Session

from app.models import Resource, User


@pytest.mark.asyncio
async def test_counts_the_callers_resources(
    async_client: httpx.AsyncClient,
    db_session: Session,
    user: User,
    other_user: User,
    auth_headers: dict,
) -> None:
    db_session.add_all([Resource(name=f"mine {i}", owner_id=user.id) for i in range(3)])
    db_session.add(Resource(name="theirs", owner_id=other_user.id))
    db_session.commit()

    response = await async_client.get("/api/v1/async-endpoint", headers=auth_headers)

    assert response.status_code == 200
    assert response.json() == {"user_id": user.id, "resource_count": 3, "live_subscribers": 0}


@pytest.mark.asyncio
async def test_requires_a_token(async_client: httpx.AsyncClient) -> None:
    response = await async_client.get("/api/v1/async-endpoint")
    assert response.status_code == 401
    assert response.json()["detail"]
