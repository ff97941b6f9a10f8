-- Failed-login counts and lock-outs per account and per source address, shared by every
-- replica (times in Unix milliseconds). Rows of quiet keys are pruned.
CREATE TABLE login_throttle (
    key            TEXT PRIMARY KEY,
    failures       INTEGER NOT NULL,
    window_start   INTEGER NOT NULL,
    locked_until   INTEGER,
    strikes        INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL
);
CREATE INDEX login_throttle_last_seen ON login_throttle(last_seen);
