"""stream_service settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import DEFAULT_PORTS, Env, GrpcServerSettings, RedisSettings, VerifierSettings


@dataclass(frozen=True)
class Settings:
    grpc: GrpcServerSettings
    redis: RedisSettings
    verifier: VerifierSettings
    log_level: str = "INFO"
    # A quiet subscription is probed with PING this often; no reply within as long again means
    # the connection is dead (a vanished server does not always close it).
    subscription_probe_seconds: float = 15.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            grpc=GrpcServerSettings.from_env(env, default_port=DEFAULT_PORTS["stream"]),
            redis=RedisSettings.from_env(env),
            verifier=VerifierSettings.from_env(env),
            log_level=env.text("LOG_LEVEL", "INFO"),
            subscription_probe_seconds=env.number("STREAM_PROBE_SECONDS", 15.0, minimum=0.1),
        )
