from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from todo_app.db import Base, SessionLocal, get_db


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(50), unique=True)


class Todo(Base):
    __tablename__ = "todos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    done: Mapped[bool] = mapped_column(default=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))


async def caller(x_account: str = Header(""), db: AsyncSession = Depends(get_db)) -> Account:
    account = await db.scalar(select(Account).where(Account.handle == x_account))
    if account is None:
        raise HTTPException(401, "Unknown account")
    return account


def todo_out(todo: Todo) -> dict[str, object]:
    return {"id": todo.id, "title": todo.title, "done": todo.done, "account_id": todo.account_id}


app = FastAPI()


@app.post("/todos", status_code=201)
async def add(title: str, me: Account = Depends(caller), db: AsyncSession = Depends(get_db)):
    todo = Todo(title=title, account_id=me.id)
    db.add(todo)
    await db.commit()
    return todo_out(todo)


@app.get("/todos")
async def todos(db: AsyncSession = Depends(get_db)):
    return [todo_out(todo) for todo in await db.scalars(select(Todo).order_by(Todo.id))]


@app.post("/todos/{todo_id}/done")
async def finish(todo_id: int, me: Account = Depends(caller), db: AsyncSession = Depends(get_db)):
    todo = await db.get(Todo, todo_id)
    if todo is None:
        raise HTTPException(404, "No such todo")
    if todo.account_id != me.id:
        raise HTTPException(403, "Not your todo")
    todo.done = True
    await db.commit()
    return todo_out(todo)


async def count_open() -> int:
    """Work outside a request, with a session of its own."""
    async with SessionLocal() as session:
        return len((await session.scalars(select(Todo).where(Todo.done.is_(False)))).all())
