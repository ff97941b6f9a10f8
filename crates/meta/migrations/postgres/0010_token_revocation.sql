-- Security (issue 19), as migrations/sqlite/0010_token_revocation.sql: tokens name the account
-- by an id that is never reused and carry its token stamp, raised whenever the account's
-- tokens must stop.
ALTER TABLE users ADD COLUMN id TEXT;
ALTER TABLE users ADD COLUMN token_stamp BIGINT NOT NULL DEFAULT 0;
UPDATE users SET id = replace(gen_random_uuid()::text, '-', '') WHERE id IS NULL;
ALTER TABLE users ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX users_id ON users(id);

ALTER TABLE robots ADD COLUMN id TEXT;
ALTER TABLE robots ADD COLUMN token_stamp BIGINT NOT NULL DEFAULT 0;
UPDATE robots SET id = replace(gen_random_uuid()::text, '-', '') WHERE id IS NULL;
ALTER TABLE robots ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX robots_id ON robots(id);
