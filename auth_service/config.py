"""auth_service settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.config import (
    Env,
    ServiceSettings,
    VerifierSettings,
)


@dataclass(frozen=True)
class PasswordSettings:
    # Argon2id; defaults are OWASP's minimum (19 MiB, 2 iterations, 1 lane).
    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1

    @classmethod
    def from_env(cls, env: Env) -> PasswordSettings:
        return cls(
            time_cost=env.integer("ARGON2_TIME_COST", 2, minimum=2),
            memory_kib=env.integer("ARGON2_MEMORY_KIB", 19456, minimum=19456),
            parallelism=env.integer("ARGON2_PARALLELISM", 1, minimum=1),
        )


@dataclass(frozen=True)
class LoginLimits:
    # Failed logins allowed per window, per account and per client address.
    per_account: int = 10
    per_address: int = 50
    window_seconds: int = 900
    # Failed client-credentials calls allowed per window and client address (each costs an
    # Argon2 verification; per client id would let anyone lock a game server out).
    service_per_address: int = 50


@dataclass(frozen=True)
class RegistrationLimits:
    # Accounts created per window and client address: each costs an Argon2 hash, and a flood
    # of accounts is how leaderboards are farmed.
    per_address: int = 30
    window_seconds: int = 3600


@dataclass(frozen=True)
class Settings(ServiceSettings):
    signing_key_file: Path
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 86400
    # A refresh token presented again this soon after its rotation, while its successor is
    # unused, is a client retrying a lost response: it gets a new pair instead of ending the
    # session (0: every reuse ends it). See AuthStore._retry_within_grace.
    refresh_reuse_grace_seconds: float = 10.0
    service_token_seconds: int = 3600
    # A rotated signing key signs only after it was published this long: at least the
    # verifiers' JWKS refresh interval (SCOREBOARD_JWKS_REFRESH_SECONDS, 60 s by default).
    key_activation_seconds: float = 90.0
    passwords: PasswordSettings = PasswordSettings()
    login_limits: LoginLimits = LoginLimits()
    registration_limits: RegistrationLimits = RegistrationLimits()
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        verifier = VerifierSettings.from_env(env)
        if verifier.jwks_file is None:
            raise ValueError("auth_service publishes keys from SCOREBOARD_JWKS_FILE; set it")
        key_file = env.path("SIGNING_KEY_FILE")
        if key_file is None:
            raise ValueError("SCOREBOARD_SIGNING_KEY_FILE must be set for auth_service")
        return cls(
            **ServiceSettings.basics_from_env(env, "auth", max_connections=8, verifier=verifier),
            signing_key_file=key_file,
            access_token_seconds=env.integer("ACCESS_TOKEN_SECONDS", 900, minimum=30),
            refresh_token_seconds=env.integer("REFRESH_TOKEN_SECONDS", 30 * 86400, minimum=60),
            refresh_reuse_grace_seconds=env.number(
                "REFRESH_REUSE_GRACE_SECONDS", 10.0, minimum=0.0
            ),
            service_token_seconds=env.integer("SERVICE_TOKEN_SECONDS", 3600, minimum=60),
            key_activation_seconds=env.number("KEY_ACTIVATION_SECONDS", 90.0, minimum=0.0),
            passwords=PasswordSettings.from_env(env),
            login_limits=LoginLimits(
                per_account=env.integer("LOGIN_FAILURES_PER_ACCOUNT", 10, minimum=1),
                per_address=env.integer("LOGIN_FAILURES_PER_ADDRESS", 50, minimum=1),
                window_seconds=env.integer("LOGIN_WINDOW_SECONDS", 900, minimum=1),
                service_per_address=env.integer(
                    "SERVICE_TOKEN_FAILURES_PER_ADDRESS", 50, minimum=1
                ),
            ),
            registration_limits=RegistrationLimits(
                per_address=env.integer("REGISTRATIONS_PER_ADDRESS", 30, minimum=1),
                window_seconds=env.integer("REGISTRATION_WINDOW_SECONDS", 3600, minimum=1),
            ),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )
