-- Failed-login counts and lock-outs per account and per source address, shared by every
-- replica (times in Unix milliseconds). Rows of quiet keys are pruned.
CREATE TABLE login_throttle (
    key            TEXT PRIMARY KEY,
    failures       BIGINT NOT NULL,
    window_start   BIGINT NOT NULL,
    locked_until   BIGINT,
    strikes        BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL
);
CREATE INDEX login_throttle_last_seen ON login_throttle(last_seen);
