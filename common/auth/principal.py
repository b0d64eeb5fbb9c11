"""Who is calling: the verified identity of an access token, and the authorization rules that
every service applies the same way (DESIGN decision 7)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from common.errors import Reason, forbidden, invalid, unauthenticated

# Scopes a service account can hold.
SCOPE_SCORES_WRITE = "scores:write"  # complete actions for any user
SCOPE_LEADERBOARD_READ = "leaderboard:read"
SCOPE_STREAM_WATCH = "stream:watch"
SCOPE_ADMIN = "admin"
ALL_SCOPES = frozenset(
    {SCOPE_SCORES_WRITE, SCOPE_LEADERBOARD_READ, SCOPE_STREAM_WATCH, SCOPE_ADMIN}
)

ROLE_USER = "user"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"
SERVICE_SUBJECT_PREFIX = "svc:"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    scopes: frozenset[str]
    token_id: str
    expires_at: float
    name: str = ""
    # Login session (the refresh-token family) the token belongs to, when it has one.
    session: str = ""
    # When the token was issued (iat, epoch seconds): a ban refuses every token issued before it.
    issued_at: float = 0.0
    # The raw token, to forward on calls made on this caller's behalf. Never logged.
    token: str = field(default="", repr=False)

    @property
    def is_service(self) -> bool:
        return self.role == ROLE_SERVICE

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN or SCOPE_ADMIN in self.scopes

    @property
    def user_id(self) -> str | None:
        """The user this token belongs to; None for a service account."""
        return None if self.is_service else self.subject

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        if self.is_service:
            return f"service:{self.subject.removeprefix(SERVICE_SUBJECT_PREFIX)}"
        return f"{'admin' if self.role == ROLE_ADMIN else 'user'}:{self.subject}"

    def has_scope(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def require_scope(self, scope: str) -> None:
        if not self.has_scope(scope):
            raise forbidden(f"this call needs the {scope} scope")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise forbidden("this call needs the admin role")

    def target_user(self, requested: str, scope: str = SCOPE_SCORES_WRITE) -> str:
        """The user a call acts for: a user acts only for itself, acting for another user needs
        `scope` (DESIGN decision 7)."""
        if not requested:
            if self.user_id is None:
                raise invalid("user_id is required when a service calls")
            return self.user_id
        if requested == self.user_id:
            return requested
        if not self.has_scope(scope):
            raise forbidden(f"acting for another user needs the {scope} scope")
        return requested


current_principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)


def current_principal() -> Principal:
    principal = current_principal_var.get()
    if principal is None:
        raise unauthenticated(Reason.UNAUTHENTICATED, "a bearer token is required")
    return principal


def current_admin() -> Principal:
    """The caller, who must be an admin (PERMISSION_DENIED otherwise)."""
    principal = current_principal()
    principal.require_admin()
    return principal
