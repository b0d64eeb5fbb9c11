-- Scoreboard schema. PostgreSQL is the source of truth; Redis is derived from it.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    display_name  text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 40),
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    banned        boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE boards (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO boards (id, name) VALUES ('default', 'Default board');

-- The action catalog: points are computed from it on the server, never taken from a client.
CREATE TABLE actions (
    id                    text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    board_id              text NOT NULL DEFAULT 'default' REFERENCES boards (id),
    name                  text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    description           text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    base_points           bigint NOT NULL CHECK (base_points BETWEEN 0 AND 1000000),
    difficulty_multiplier numeric(8, 3) NOT NULL DEFAULT 1 CHECK (difficulty_multiplier > 0 AND difficulty_multiplier <= 100),
    daily_limit           integer NOT NULL DEFAULT 1 CHECK (daily_limit BETWEEN 1 AND 100000),
    cooldown_seconds      integer NOT NULL DEFAULT 0 CHECK (cooldown_seconds BETWEEN 0 AND 86400),
    requires_ticket       boolean NOT NULL DEFAULT false,
    min_duration_seconds  integer NOT NULL DEFAULT 0 CHECK (min_duration_seconds BETWEEN 0 AND 86400),
    active                boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO actions (id, name, description, base_points, difficulty_multiplier, daily_limit,
                     cooldown_seconds, requires_ticket, min_duration_seconds) VALUES
    ('daily-login', 'Daily login', 'Sign in once a day.', 10, 1.0, 1, 0, false, 0),
    ('complete-quest', 'Complete a quest', 'Finish any quest.', 40, 1.5, 3, 60, false, 0),
    ('win-match', 'Win a match', 'Win a ranked match.', 25, 1.0, 20, 10, false, 0),
    ('defeat-boss', 'Defeat the boss', 'Start the fight, then beat the boss.', 100, 2.0, 1, 0, true, 5),
    ('share-replay', 'Share a replay', 'Share a replay with a friend.', 5, 1.0, 1, 0, false, 0);

-- Each user's total per board; version counts the ledger rows (optimistic-locking version).
CREATE TABLE user_scores (
    board_id   text NOT NULL REFERENCES boards (id),
    user_id    uuid NOT NULL REFERENCES users (id),
    total      bigint NOT NULL DEFAULT 0,
    version    bigint NOT NULL DEFAULT 0,
    -- When the user reached this total: the ranking's tie-breaker (earlier first).
    reached_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (board_id, user_id)
);
-- The PostgreSQL fallback ranks exactly like Redis: total desc, reached_at asc, user_id asc.
CREATE INDEX user_scores_rank ON user_scores (board_id, total DESC, reached_at, user_id)
    WHERE version > 0;

-- The ledger: one row per score change, append-only. total == SUM(points) per user and board.
CREATE TABLE user_actions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    board_id    text NOT NULL REFERENCES boards (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    kind        text NOT NULL CHECK (kind IN ('action', 'void', 'adjust')),
    action_id   text REFERENCES actions (id),
    points      bigint NOT NULL,
    -- UTC day and the n-th completion of this action that day: the database itself refuses a
    -- completion past the daily limit, whatever the application does.
    day         date NOT NULL,
    slot        integer,
    voids       bigint REFERENCES user_actions (id),
    -- Audit: who asked (user:<id>, service:<client>, admin:<id>), through which path, which request.
    actor       text NOT NULL,
    path        text NOT NULL,
    request_id  text,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (kind <> 'action' OR (action_id IS NOT NULL AND slot IS NOT NULL))
);
CREATE UNIQUE INDEX user_actions_daily_slot ON user_actions (board_id, user_id, action_id, day, slot)
    WHERE kind = 'action';
CREATE INDEX user_actions_user_action ON user_actions (board_id, user_id, action_id, created_at DESC);
CREATE UNIQUE INDEX user_actions_void_once ON user_actions (voids) WHERE voids IS NOT NULL;

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'user_actions is append-only: add a void or adjust entry instead';
END;
$$;
CREATE TRIGGER user_actions_append_only BEFORE UPDATE OR DELETE ON user_actions
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- Transactional outbox: written in the score transaction, moved to the Redis Stream by the relay.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    board_id   text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotency keys, scoped per caller, kept at least 24 hours.
CREATE TABLE idempotency_keys (
    caller       text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Single-use action tickets (StartAction -> CompleteAction).
CREATE TABLE action_tickets (
    id          uuid PRIMARY KEY,
    board_id    text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    action_id   text NOT NULL REFERENCES actions (id),
    issued_at   timestamptz NOT NULL,
    not_before  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX action_tickets_expires ON action_tickets (expires_at);

-- Anomalies flagged for admins (never silently dropped).
CREATE TABLE score_anomalies (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    board_id        text NOT NULL,
    user_id         uuid NOT NULL REFERENCES users (id),
    kind            text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    ledger_entry_id bigint REFERENCES user_actions (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    reviewed_at     timestamptz
);

-- Service accounts for game servers and internal services (client credentials).
CREATE TABLE service_accounts (
    client_id   text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    secret_hash text NOT NULL,
    scopes      text[] NOT NULL DEFAULT '{}',
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);

-- Opaque refresh tokens, stored hashed, rotated on every use (RFC 9700 reuse detection).
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Revoked access tokens (logout); cached in Redis, durable here.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- Every admin act.
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text,
    detail     jsonb NOT NULL DEFAULT '{}',
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
