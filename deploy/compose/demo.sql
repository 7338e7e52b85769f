-- The pipeline's SQL in the compose demo: kt_fdw's foreign table on the master,
-- a rules table whose statement triggers push every committed change into it.
CREATE EXTENSION kt_fdw;
CREATE SERVER master FOREIGN DATA WRAPPER kt_fdw OPTIONS (host 'master', port '1978');
CREATE USER MAPPING FOR PUBLIC SERVER master;
CREATE FOREIGN TABLE kt_rules (key text, value text) SERVER master OPTIONS (upsert 'true');

CREATE TABLE rules (id text PRIMARY KEY, value text NOT NULL);
CREATE FUNCTION rules_upsert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO kt_rules SELECT id, value FROM new_rows;
	RETURN NULL;
END $$;
CREATE FUNCTION rules_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM kt_rules WHERE key = ANY (SELECT id FROM old_rows);
	RETURN NULL;
END $$;
CREATE TRIGGER rules_ins AFTER INSERT ON rules REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION rules_upsert();
CREATE TRIGGER rules_upd AFTER UPDATE ON rules REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION rules_upsert();
CREATE TRIGGER rules_del AFTER DELETE ON rules REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION rules_delete();

-- 1 000 rules in one transaction, then a toggle (on, then off), deletions, and a
-- transaction that rolls back: the replicas must end at exactly the committed state.
INSERT INTO rules SELECT 'rule' || i, 'on' FROM generate_series(1, 1000) i;
UPDATE rules SET value = 'off' WHERE id IN ('rule1', 'rule2', 'rule3');
UPDATE rules SET value = 'on' WHERE id = 'rule2';
DELETE FROM rules WHERE id IN ('rule10', 'rule11');
BEGIN;
UPDATE rules SET value = 'rolled-back' WHERE id = 'rule5';
ROLLBACK;
