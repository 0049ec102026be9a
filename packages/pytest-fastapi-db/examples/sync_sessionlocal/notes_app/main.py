from datetime import UTC, datetime, timedelta

import jwt
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from notes_app.db import SessionLocal, get_db
from notes_app.models import AuditEntry, Note, User

SECRET = "example-secret-of-at-least-thirty-two-bytes"  # noqa: S105  (an example's)


def create_token(user_id: int, lifetime: timedelta = timedelta(minutes=15)) -> str:
    """Tokens name the user's id (as a string), not an email."""
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def current_user(authorization: str = Header(""), db: Session = Depends(get_db)) -> User:
    try:
        claims = jwt.decode(authorization.removeprefix("Bearer "), SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(401, "Could not validate credentials") from None
    user = db.get(User, int(claims["sub"]))
    if user is None:
        raise HTTPException(401, "Could not validate credentials")
    return user


def audit(message: str) -> None:
    """Background work with a session of its own, as tutorials write it."""
    with SessionLocal() as db:
        db.add(AuditEntry(message=message))
        db.commit()


app = FastAPI()


def note_out(note: Note) -> dict[str, object]:
    return {"id": note.id, "text": note.text, "owner_id": note.owner_id}


@app.post("/notes", status_code=201)
def create_note(
    text: str,
    tasks: BackgroundTasks,
    user: User = Depends(current_user),
    db: Session = Depends(get_db),
):
    note = Note(text=text, owner_id=user.id)
    db.add(note)
    db.commit()
    tasks.add_task(audit, f"note {note.id} created")
    return note_out(note)


@app.get("/notes")
def list_notes(db: Session = Depends(get_db)):
    return [note_out(note) for note in db.scalars(select(Note).order_by(Note.id))]


def owned(note_id: int, user: User, db: Session) -> Note:
    note = db.get(Note, note_id)
    if note is None:
        raise HTTPException(404, "Note not found")
    if note.owner_id != user.id:
        raise HTTPException(403, "Not your note")
    return note


@app.put("/notes/{note_id}")
def update_note(
    note_id: int, text: str, user: User = Depends(current_user), db: Session = Depends(get_db)
):
    note = owned(note_id, user, db)
    note.text = text
    db.commit()  # expires `note`: the answer is read back from the database
    return note_out(note)


@app.delete("/notes/{note_id}", status_code=204)
def delete_note(
    note_id: int, user: User = Depends(current_user), db: Session = Depends(get_db)
) -> None:
    db.delete(owned(note_id, user, db))
    db.commit()
