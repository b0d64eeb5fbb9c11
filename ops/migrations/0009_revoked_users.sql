-- Revoked users (a ban): every access token of the user issued before revoked_before is refused,
-- whatever its session, until expires_at (past the life of any token issued before it). Written
-- by the ban's own transaction, with the user's refresh tokens and sessions revoked beside it.
CREATE TABLE revoked_users (
    user_id        uuid PRIMARY KEY REFERENCES users (id),
    revoked_before timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_users_revoked_at ON revoked_users (revoked_at);
