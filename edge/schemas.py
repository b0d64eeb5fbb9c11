"""Request and response bodies of the REST API. Requests are validated with these models and the
OpenAPI document is generated from them, so the two cannot disagree."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
ACTION_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
BOARD_ID = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompleteActionBody(_Body):
    actionId: str = Field(pattern=ACTION_ID, description="Catalog id of the completed action.")
    ticket: str | None = Field(
        default=None, max_length=200, description="Ticket from /api/actions/start, when needed."
    )


class StartActionBody(_Body):
    actionId: str = Field(pattern=ACTION_ID)


class RegisterBody(_Body):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=128)
    displayName: str | None = Field(default=None, min_length=1, max_length=40)


class LoginBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


class RefreshBody(_Body):
    refreshToken: str | None = Field(
        default=None, max_length=256, description="Omit to use the httpOnly refresh cookie."
    )


class LogoutBody(_Body):
    refreshToken: str | None = Field(default=None, max_length=256)


class UsersRanksBody(_Body):
    userIds: list[str] = Field(
        max_length=100,
        description="User ids (UUIDs), at most 100; duplicates count once. The caller is "
        "always added.",
    )
    board: str | None = Field(
        default=None, pattern=BOARD_ID, description="The board; omit for the default one."
    )


class Envelope(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class ErrorEnvelope(BaseModel):
    success: Literal[False] = False
    error: str
    code: str


class CompleteActionResult(BaseModel):
    newScore: int
    increment: int
    rank: int
    message: str


class StartActionResult(BaseModel):
    ticket: str
    notBefore: str
    expiresAt: str


class LeaderboardEntry(BaseModel):
    rank: int
    userId: str
    username: str = Field(description="The player's public display name.")
    score: int


class Leaderboard(BaseModel):
    top10: list[LeaderboardEntry]
    lastUpdated: str | None
    sequence: int = Field(description="Sequence number of this top-10 snapshot (0 when unknown).")
    board: str = Field(default="default", description="The board.")
    period: int | None = Field(default=None, description="The board's period shown.")


class EntryPage(BaseModel):
    entries: list[LeaderboardEntry]
    nextPageToken: str | None = Field(description="Pass as pageToken for the next page.")
    totalUsers: int


class EntriesAround(BaseModel):
    entries: list[LeaderboardEntry]


class TierRef(BaseModel):
    id: str = Field(description="The tier's id on its board.")
    name: str = Field(description="The tier's display name.")


class UserRank(BaseModel):
    userId: str
    username: str
    rank: int
    score: int
    inTop10: bool
    distanceFromTop10: int
    totalUsers: int
    percentile: float | None = Field(
        description="Top x % (rank / totalUsers, rounded up to a tenth: 0.1 is the best); "
        "null on a board with too few ranked users."
    )
    tier: TierRef | None = Field(
        default=None,
        description="The player's tier when the board defines tiers (frozen into a closed "
        "period's standings); null otherwise.",
    )


class ListedUser(BaseModel):
    userId: str
    ranked: bool = Field(description="False when the user has no score on the board.")
    rank: int | None = Field(description="Rank on the whole board; null when not ranked.")
    listRank: int | None = Field(
        description="Rank within this list (ties share it); null when not ranked."
    )
    username: str | None = Field(description="Public display name; null when not ranked.")
    score: int | None = Field(description="Null when not ranked.")
    tier: TierRef | None = Field(
        default=None,
        description="The player's tier when ranked and the board defines tiers; else null.",
    )


class UsersRanks(BaseModel):
    entries: list[ListedUser] = Field(
        description="The ranked users best first, then the unranked ones in the order asked."
    )
    totalUsers: int = Field(description="Ranked users on the whole board.")


class Action(BaseModel):
    actionId: str
    name: str
    description: str
    points: int
    dailyLimit: int
    cooldownSeconds: int
    requiresTicket: bool
    minDurationSeconds: int
    remainingToday: int | None = Field(description="For a signed-in user; null otherwise.")
    availableAt: str | None = Field(description="When a cooldown ends, for a signed-in user.")


class ActionList(BaseModel):
    actions: list[Action]


class User(BaseModel):
    userId: str
    username: str
    displayName: str
    role: str


class Session(BaseModel):
    user: User | None = None
    accessToken: str
    refreshToken: str
    expiresIn: int
    tokenType: str


class WsTicket(BaseModel):
    ticket: str
    expiresIn: int


class Empty(BaseModel):
    pass


class BoardInfo(BaseModel):
    boardId: str
    name: str
    sortOrder: Literal["desc", "asc"] = Field(
        description="desc: higher is better; asc: lower is better (e.g. a lap time)."
    )
    combine: Literal["sum", "best", "latest"] = Field(
        description="How a player's entries combine on the board."
    )
    resetSchedule: str | None = Field(
        description="5-field cron expression of the resets, read in timeZone; null: never resets."
    )
    timeZone: str = Field(description="IANA time zone of the schedule.")
    currentPeriod: int = Field(description="The period open now (1 for a board never reset).")
    periodStartsAt: str | None = Field(description="When the current period started.")
    nextResetAt: str | None = Field(
        description="When the current period ends (the next reset); null for an endless one."
    )
    seasonStartsAt: str | None
    seasonEndsAt: str | None
    keepPeriods: int = Field(description="Closed periods whose standings are kept (0: all).")
    lastClosedPeriod: int | None = Field(description="The newest closed period, if any.")
    lastWinners: list[LeaderboardEntry] = Field(
        description="The first three of the last closed period."
    )


class PeriodInfo(BaseModel):
    period: int
    startsAt: str
    endsAt: str | None = Field(description="End (exclusive); null for an endless period.")
    closed: bool
    closedAt: str | None
    entries: int = Field(description="Frozen entries of a closed period (0 while open).")


class PeriodList(BaseModel):
    periods: list[PeriodInfo] = Field(description="Newest first.")
    nextPageToken: str | None = Field(description="Pass as pageToken for the next page.")


class PeriodEntries(BaseModel):
    period: PeriodInfo
    entries: list[LeaderboardEntry] = Field(description="Final standings, best first.")
    nextPageToken: str | None = Field(description="Pass as pageToken for the next page.")
    userEntry: LeaderboardEntry | None = Field(
        description="With userId: that user's final entry (the page holds it)."
    )
