from fastapi import APIRouter, WebSocket, status
from sqlalchemy.exc import OperationalError

from app.api.deps import Broker, Gate, UngatedSession, run_with_connection
from app.api.live_updates import LiveConnections, LiveLimits
from app.connection_gate import ConnectionsExhausted
from app.errors import DATABASE_BUSY, NotAuthenticated
from app.services import users

router = APIRouter(tags=["live updates"])

# Browsers cannot set headers on a WebSocket: they offer `["bearer", "<token>"]` as subprotocols.
BEARER_SUBPROTOCOL = "bearer"


def _bearer_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The token and the subprotocol to accept, from `Authorization` or the subprotocol pair."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip(), None
    offered = websocket.scope.get("subprotocols", [])
    if len(offered) == 2 and offered[0] == BEARER_SUBPROTOCOL:
        return offered[1], BEARER_SUBPROTOCOL
    return None, None


def live_connections(websocket: WebSocket) -> LiveConnections:
    connections: LiveConnections = websocket.app.state.live_connections
    return connections


@router.websocket("/ws/updates")
async def updates(
    websocket: WebSocket,
    session: UngatedSession,
    broker: Broker,
    gate: Gate,
) -> None:
    token, subprotocol = _bearer_token(websocket)
    try:
        # The socket may stay open for hours: it holds a connection only while it logs in,
        # and while it checks now and then that its user may still listen.
        holder = await run_with_connection(gate, session, users.token_holder, token)
    except NotAuthenticated as exc:
        # Refused before accepting: a client over a real server sees HTTP 403.
        await websocket.close(status.WS_1008_POLICY_VIOLATION, exc.detail)
        return
    except ConnectionsExhausted:
        await websocket.close(status.WS_1013_TRY_AGAIN_LATER, DATABASE_BUSY)
        return

    async def still_active() -> bool:
        try:
            return await run_with_connection(gate, session, users.still_valid, holder)
        except (ConnectionsExhausted, OperationalError):
            return True  # the database is busy or away, not the user gone: ask again later

    limits = LiveLimits.from_settings(websocket.app.state.settings)
    await live_connections(websocket).serve(
        websocket, subprotocol, broker, limits, holder, still_active
    )
