-- Revoked login sessions (refresh-token families): every access token whose sid names one is
-- refused (logout, refresh-token reuse), until the newest token of the session has expired.
CREATE TABLE revoked_sessions (
    family_id  uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_revoked_at ON revoked_sessions (revoked_at);

-- When a token was revoked, so auth_service can re-copy recent revocations to Redis (a write to
-- Redis that failed after the commit is healed within seconds).
ALTER TABLE revoked_tokens ADD COLUMN revoked_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
