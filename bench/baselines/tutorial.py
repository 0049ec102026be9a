"""The everyday baseline: the same routes written as the FastAPI and SQLAlchemy tutorials
teach (sync routes, a SessionLocal per request through `Depends`, ORM objects through
`response_model`), on the same table, with no auth and no limits.

    DATABASE_URL=... uvicorn bench.baselines.tutorial:app
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Integer, String, Text, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

URL = os.environ.get("DATABASE_URL", "")
engine = create_engine(
    URL, **({"connect_args": {"check_same_thread": False}} if "sqlite" in URL else {})
)
SessionLocal = sessionmaker(bind=engine, autoflush=False)


class Base(DeclarativeBase):
    pass


class Resource(Base):
    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    owner_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ResourceIn(BaseModel):
    name: str
    description: str | None = None
    metadata: dict[str, Any] = {}


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    name: str
    description: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    owner_id: int
    version: int
    created_at: datetime
    updated_at: datetime


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


app = FastAPI()


@app.get("/api/v1/resources", response_model=list[ResourceOut])
def list_resources(skip: int = 0, limit: int = 10, db: Session = Depends(get_db)) -> Any:
    db.scalar(select(func.count()).select_from(Resource))
    return db.scalars(select(Resource).order_by(Resource.id).offset(skip).limit(limit)).all()


@app.get("/api/v1/resources/{resource_id}", response_model=ResourceOut)
def read_resource(resource_id: int, db: Session = Depends(get_db)) -> Any:
    resource = db.get(Resource, resource_id)
    if resource is None:
        raise HTTPException(status_code=404, detail="Resource not found")
    return resource


@app.post("/api/v1/resources", response_model=ResourceOut, status_code=201)
def create_resource(item: ResourceIn, db: Session = Depends(get_db)) -> Any:
    now = datetime.now(UTC)
    resource = Resource(
        name=item.name,
        description=item.description,
        metadata_=item.metadata,
        owner_id=1,
        created_at=now,
        updated_at=now,
    )
    db.add(resource)
    db.commit()
    db.refresh(resource)
    return resource


@app.post("/api/v1/resources/bulk", response_model=list[ResourceOut], status_code=201)
def create_resources(items: list[ResourceIn], db: Session = Depends(get_db)) -> Any:
    now = datetime.now(UTC)
    resources = [
        Resource(
            name=item.name,
            description=item.description,
            metadata_=item.metadata,
            owner_id=1,
            created_at=now,
            updated_at=now,
        )
        for item in items
    ]
    db.add_all(resources)
    db.commit()
    return resources


@app.patch("/api/v1/resources/{resource_id}", response_model=ResourceOut)
def update_resource(resource_id: int, item: ResourceIn, db: Session = Depends(get_db)) -> Any:
    resource = db.get(Resource, resource_id)
    if resource is None:
        raise HTTPException(status_code=404, detail="Resource not found")
    resource.name = item.name
    resource.version += 1
    resource.updated_at = datetime.now(UTC)
    db.commit()
    db.refresh(resource)
    return resource
