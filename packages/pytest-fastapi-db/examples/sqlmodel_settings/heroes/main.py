from collections.abc import Iterator

from fastapi import Depends, FastAPI, Header, HTTPException
from sqlmodel import Field, Session, SQLModel, create_engine, select

from heroes.config import database_url

engine = create_engine(database_url())


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    owner: str = Field(max_length=50, index=True)


class HeroIn(SQLModel):
    name: str


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def caller(x_user: str = Header("")) -> str:
    """The template checks a JWT; a header is enough to show owner checks here."""
    if not x_user:
        raise HTTPException(401, "Not authenticated")
    return x_user


app = FastAPI()


@app.post("/heroes", status_code=201)
def create_hero(hero: HeroIn, owner: str = Depends(caller), db: Session = Depends(get_db)) -> Hero:
    stored = Hero(name=hero.name, owner=owner)
    db.add(stored)
    db.commit()
    db.refresh(stored)
    return stored


@app.get("/heroes")
def list_heroes(db: Session = Depends(get_db)) -> list[Hero]:
    return list(db.exec(select(Hero).order_by(Hero.id)))


@app.patch("/heroes/{hero_id}")
def rename(
    hero_id: int, hero: HeroIn, owner: str = Depends(caller), db: Session = Depends(get_db)
) -> Hero:
    stored = db.get(Hero, hero_id)
    if stored is None:
        raise HTTPException(404, "Hero not found")
    if stored.owner != owner:
        raise HTTPException(403, "Not your hero")
    stored.name = hero.name
    db.add(stored)
    db.commit()
    db.refresh(stored)
    return stored
