-- Security (issue 19): tokens name the account by an id that is never reused, and carry the
-- account's token stamp. Re-creating a name gives a new id, so old tokens do not revive; the
-- stamp goes up on a password change, a disable, a lowered or removed role, a robot's changed
-- permissions or a deleted project the account had a part in, and every token that carries an
-- older stamp is refused, on every replica, from the next request on.
ALTER TABLE users ADD COLUMN id TEXT;
ALTER TABLE users ADD COLUMN token_stamp INTEGER NOT NULL DEFAULT 0;
UPDATE users SET id = lower(hex(randomblob(16))) WHERE id IS NULL;
CREATE UNIQUE INDEX users_id ON users(id);

ALTER TABLE robots ADD COLUMN id TEXT;
ALTER TABLE robots ADD COLUMN token_stamp INTEGER NOT NULL DEFAULT 0;
UPDATE robots SET id = lower(hex(randomblob(16))) WHERE id IS NULL;
CREATE UNIQUE INDEX robots_id ON robots(id);
