"""The dashboard API's request and reply shapes, as pydantic models and TypedDicts.

They do two jobs from one declaration: ``hive.ui.api`` parses each request's JSON body and
query string into them (bad input is a 400 ``bad_request`` naming the field), and
``hive.ui.openapi`` writes their JSON Schemas into /api/openapi.json.

>>> parse(KickBody, {"note": 5}, "body")
Traceback (most recent call last):
...
hive.ui.calls.ApiError: body: 'note' must be a string, got 5
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from hive.config import Str, explain
from hive.status import AgentStatus
from hive.ui.calls import ApiError

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, where: str) -> M:
    """``data`` as ``model``, or a 400 ``bad_request`` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "bad_request", explain(exc.errors(), where)) from None


class Shape(BaseModel):
    """A request part: unknown fields are ignored (forms carry their csrf field too)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _limit(default: int, low: int = 1, high: int = 1000) -> Any:
    return Field(default=default, ge=low, le=high)


# --- query strings (values arrive as text; numbers are converted, then checked) ----------

QueryInt = Annotated[int, Field(strict=False)]


class LimitQuery(Shape):
    """?limit= on a list, newest first."""

    limit: QueryInt = _limit(100)


class MessagesQuery(LimitQuery):
    """An agent's mail: a page of it (``before``), one delivery state."""

    before: QueryInt | None = Field(default=None, ge=1, le=2**62)  # older than this id
    state: Annotated[str, Field(pattern="^(|pending|delivered)$")] = ""


class TurnsQuery(Shape):
    """An agent's turns, newest first: a page of them (``before``: older than this id)."""

    limit: QueryInt = _limit(50)
    before: QueryInt | None = Field(default=None, ge=1, le=2**62)


class EventsQuery(LimitQuery):
    """Hive events, of one agent or all."""

    agent: str = ""  # "": every agent


class ModelQuery(Shape):
    """Whose model."""

    agent: str = ""


class StatsQuery(Shape):
    """Which telemetry series, since when."""

    agent: str = ""
    since: float | None = None  # unix seconds, or negative: seconds ago (default: last hour)
    keys: str = ""  # comma-separated: turn.duration,tool.*


class HistoryQuery(LimitQuery):
    """Resolved (or any) approvals and questions, newest first."""

    status: Annotated[
        str, Field(pattern="^(|pending|approved|denied|answered|cancelled|expired|failed)$")
    ] = ""
    agent: str = ""


class CostQuery(Shape):
    """Whose cost ("": every agent)."""

    agent: str = ""


class LogQuery(Shape):
    """How many of the log's last lines (or of those after a cursor)."""

    lines: QueryInt = _limit(200, 1, 5000)
    after: Annotated[str, Field(max_length=512)] = ""  # a cursor from an earlier page


class LogStreamQuery(Shape):
    """Where following the log starts: after a page's cursor ("": from now on)."""

    after: Annotated[str, Field(max_length=512)] = ""


class StreamQuery(Shape):
    """Which kinds the live stream carries, and how far a client may fall behind."""

    kinds: str | None = None  # comma-separated kinds (default: all)
    backlog: QueryInt = _limit(1000, 10, 100_000)


class InboxQuery(Shape):
    """Which attention items: a state (open = new + seen), a least severity, one agent or kind."""

    state: Annotated[str, Field(pattern="^(open|new|seen|done|all)$")] = "open"
    severity: Annotated[str, Field(pattern="^(info|high|critical)$")] = "info"
    agent: str = ""
    kind: str = ""
    limit: QueryInt = _limit(100)
    offset: QueryInt = Field(default=0, ge=0, le=10**9)


# --- JSON bodies (strict: a number is not a string) ------------------------------------------


class SendBody(Shape):
    """A message to the agent, from the operator."""

    body: Annotated[Str, Field(min_length=1)]


class KickBody(Shape):
    """Why the operator wakes the agent (shown to it in the turn)."""

    note: Annotated[Str, Field(max_length=4000)] | None = None


class DenyBody(Shape):
    """Why an approval is denied (told to the agent)."""

    reason: Annotated[Str, Field(max_length=4000)] | None = None


class AnswerBody(Shape):
    """The operator's answer to an agent's question."""

    answer: Annotated[Str, Field(max_length=64_000)]


class SpawnBody(Shape):
    """A new agent, created and started now (the operator is the approver)."""

    name: Str
    model: Str = ""
    parent: Str = ""
    prompt: Annotated[Str, Field(max_length=64_000)] = ""
    runtime: Str = ""


class DestroyBody(Shape):
    """Remove the agent; its state dir is kept unless ``purge``."""

    purge: bool = False


class StopBody(Shape):
    """``hard``: cancel the running turn now, else let it finish."""

    hard: bool = False


class ModelBody(Shape):
    """The model an agent uses from its next turn."""

    agent: Str
    model: Str
    force: bool = False  # a model not in [hive] models


class InboxMarkBody(Shape):
    """Move attention items to a state: the ``ids`` given, or ``all`` that match the filter."""

    state: Annotated[str, Field(pattern="^(new|seen|done)$")]
    ids: Annotated[list[Annotated[int, Field(ge=1, le=2**62)]], Field(max_length=10_000)] | None = (
        None
    )
    all: bool = False
    filter_state: Annotated[str, Field(pattern="^(open|new|seen|done|all)$")] = "open"
    severity: Annotated[str, Field(pattern="^(info|high|critical)$")] = "info"
    agent: str = ""
    kind: str = ""


# --- replies ---------------------------------------------------------------------------------


class ErrorDetail(TypedDict):
    """What went wrong."""

    code: str  # stable, machine-readable (hive.ui.calls maps it to the HTTP status)
    message: str


class ErrorReply(TypedDict):
    """Every error the API answers."""

    error: ErrorDetail


class Features(TypedDict):
    """The optional parts this hive has."""

    set_model: bool
    approvals: bool
    questions: bool
    journald: bool
    models: list[str]  # the models /model accepts without --force


class SessionReply(TypedDict):
    """What the page needs first."""

    csrf: str
    version: str
    features: Features


class AgentList(TypedDict):
    """Every agent's status row."""

    agents: list[AgentStatus]


class FleetHive(TypedDict):
    """One hive's row of the fleet view: its link's health and its agents' status rows."""

    hive: str
    connected: bool
    rtt: float | None
    lag: int
    outbox: dict[str, int]
    age: float
    agents: list[dict[str, Any]]
    questions: int  # its pending operator questions (GET /api/fleet/questions lists them)
    # A row that could not be read whole (code bad_row; hive.federation.peer_input)
    error: NotRequired[dict[str, str]]


class Fleet(TypedDict):
    """This hive's name (null: no federation) and every hive's row, this hive's first."""

    hive: str | None
    hives: list[FleetHive]


class RemoteQuestions(TypedDict):
    """The other hives' pending questions (``key`` ``12@beta``, ``agent`` ``bob@beta``,
    ``hive``), how many each hive left off, and each hive that refused or did not answer."""

    questions: list[dict[str, Any]]
    left_off: dict[str, int]
    errors: list[dict[str, str]]


class ModelReply(TypedDict):
    """An agent's active model."""

    agent: str
    model: str | None


class Messages(TypedDict):
    """Messages, newest first, with their delivery state."""

    messages: list[dict[str, Any]]


class Turns(TypedDict):
    """Turns, newest first."""

    turns: list[dict[str, Any]]


class TurnEvents(TypedDict):
    """One turn's transcript, in order."""

    turn_id: int
    events: list[dict[str, Any]]


class Events(TypedDict):
    """Hive events, newest first."""

    events: list[dict[str, Any]]


class History(TypedDict):
    """Approvals and questions with who resolved them, when and how (``resolution``)."""

    approvals: list[dict[str, Any]]


class Scheduled(TypedDict):
    """Approved prompts waiting for their time."""

    scheduled: list[dict[str, Any]]


class Approvals(TypedDict):
    """What waits for the operator; ``seq``: the hub's sequence number it is as of."""

    approvals: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    drafts: list[dict[str, Any]]
    seq: int


class Spend(TypedDict):
    """Turns and what they cost, for one agent, model or day (``key``)."""

    key: str
    turns: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float


class Cost(TypedDict):
    """What turns cost, as the runtime reported (hive.spend): today (UTC) and 7 days."""

    today: str
    agents_today: list[Spend]
    agents_7d: list[Spend]
    models_7d: list[Spend]
    days: list[Spend]


class CostReply(Cost):
    """The cost, and the daily budgets of hive.toml (0: none)."""

    budgets: dict[str, Any]


class Stats(TypedDict):
    """Telemetry series ([ts, value] pairs per key) and their summary."""

    agent: str | None
    since: float
    now: float
    series: dict[str, list[list[float]]]
    summary: dict[str, Any]
    cost: Cost


class InboxCounts(TypedDict):
    """Open attention items: all, new, and by severity (critical, high, info)."""

    open: int
    new: int
    by_severity: dict[str, int]


class InboxItem(TypedDict):
    """One thing that needs the operator (hive.attention)."""

    id: int
    key: str  # one open item per key: a repeat bumps ``count``
    kind: str  # failed, needs_login, crash, over_budget, approval, question, mail
    severity: str  # critical, high, info
    agent: str
    title: str
    body: str
    link: str
    created_at: float
    updated_at: float
    count: int
    state: str  # new, seen, done
    expires_at: float | None
    done_at: float | None


class Inbox(TypedDict):
    """A page of attention items, most severe first; ``total``: how many match."""

    items: list[InboxItem]
    total: int
    counts: InboxCounts


class InboxMarked(TypedDict):
    """How many items changed state (0: nothing to do), and the open counts after."""

    changed: int
    state: str
    counts: InboxCounts


Result = dict[str, Any]  # an actor's or admin verb's reply, passed on as it is
