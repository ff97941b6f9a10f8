-- Performance (issue 7): a repository's tag list has a version, raised in the transaction that
-- adds or removes one of its tags (moving a tag to another manifest does not change the list).
-- A server keeps a repository's list in memory with the version it read before the list, and
-- serves it while the database still gives that version: correct across replicas, whichever
-- one wrote.
ALTER TABLE repositories ADD COLUMN tag_list_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER tags_added AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tag_list_version = tag_list_version + 1 WHERE id = NEW.repository_id;
END;

CREATE TRIGGER tags_removed AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_list_version = tag_list_version + 1 WHERE id = OLD.repository_id;
END;
