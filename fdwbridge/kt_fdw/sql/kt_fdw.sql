--
-- kt_fdw regression test.  Needs a fresh KT-compatible server on 127.0.0.1
-- whose port is in the environment variable KT_PORT, with at least two
-- databases (e.g. ktd -host 127.0.0.1 -port $KT_PORT '*' '%').
--
\getenv kt_port KT_PORT
\set VERBOSITY default

CREATE EXTENSION kt_fdw;

-- option validation
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (hots '127.0.0.1');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (sslmode 'prefer');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (sslrootcert 'ca.crt');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (port '0');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (port '65536');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (port 'x1978');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (timeout '-2');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (timeout '1.5');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (use_transactions 'maybe');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (batch_size '0');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (upsert 'maybe');
CREATE SERVER bad FOREIGN DATA WRAPPER kt_fdw OPTIONS (host '');
CREATE FOREIGN DATA WRAPPER kt_fdw2 HANDLER kt_fdw_handler VALIDATOR kt_fdw_validator OPTIONS (host 'x');

CREATE SERVER kt FOREIGN DATA WRAPPER kt_fdw
  OPTIONS (host '127.0.0.1', port :'kt_port', timeout '10');
CREATE USER MAPPING FOR PUBLIC SERVER kt OPTIONS (user 'x');
CREATE USER MAPPING FOR PUBLIC SERVER kt;
CREATE FOREIGN TABLE bad_t (key text, value text) SERVER kt OPTIONS (dbname 'x');
CREATE FOREIGN TABLE bad_t (key text, value text) SERVER kt OPTIONS (batch_size '100000');
CREATE FOREIGN TABLE bad_t (key text, value text) SERVER kt OPTIONS (upsert '');
ALTER SERVER kt OPTIONS (SET port '99999');
ALTER SERVER kt OPTIONS (SET timeout 'soon');

-- basic table
CREATE FOREIGN TABLE kv (key text, value text) SERVER kt;
SELECT * FROM kv ORDER BY key;
INSERT INTO kv VALUES ('apple', 'red'), ('banana', 'yellow'), ('cherry', 'dark red');
INSERT INTO kv VALUES ('grape', 'green') RETURNING *;
SELECT * FROM kv ORDER BY key;

-- a duplicate key is KT's error
INSERT INTO kv VALUES ('apple', 'green');
UPDATE kv SET value = 'crimson' WHERE key = 'cherry';
UPDATE kv SET value = value || '!' WHERE value LIKE '%green%' RETURNING key, value;
UPDATE kv SET key = 'avocado' WHERE key = 'apple';
UPDATE kv SET key = 'apple' WHERE key = 'apple';
DELETE FROM kv WHERE key = 'banana';
DELETE FROM kv WHERE key = 'nothing';
DELETE FROM kv WHERE key = 'grape' RETURNING *;
SELECT * FROM kv ORDER BY key;

-- NULLs and limits
INSERT INTO kv VALUES (NULL, 'x');
INSERT INTO kv VALUES ('x', NULL);
UPDATE kv SET value = NULL WHERE key = 'apple';
INSERT INTO kv VALUES (repeat('k', 65536), 'x');
INSERT INTO kv VALUES (repeat('k', 65535), 'long key');
SELECT length(key), value FROM kv WHERE key = repeat('k', 65535);
DELETE FROM kv WHERE key = repeat('k', 65535);
INSERT INTO kv VALUES (E'tab\there', E'line\nbreak'), ('ünïcödé', '東京');
SELECT * FROM kv ORDER BY key COLLATE "C";

-- wrong shapes of tables
CREATE FOREIGN TABLE one_col (key text) SERVER kt;
SELECT * FROM one_col;
CREATE FOREIGN TABLE three_col (key text, value text, extra int) SERVER kt;
INSERT INTO three_col VALUES ('a', 'b', 1);

-- binary keys and values (in the second KT database)
CREATE FOREIGN TABLE kb (k bytea, v bytea) SERVER kt OPTIONS (db '1');
INSERT INTO kb VALUES ('\x00'::bytea, '\x000102'::bytea),
  ('\x090a0d'::bytea, '\x0a0009ff'::bytea),
  ('\xff00ff'::bytea, ''::bytea),
  (convert_to('plain', 'UTF8'), '\x5c74'::bytea);
SELECT encode(k, 'hex') AS k, encode(v, 'hex') AS v FROM kb ORDER BY k;
SELECT encode(v, 'hex') FROM kb WHERE k = '\x090a0d'::bytea;
SELECT encode(k, 'hex') FROM kb WHERE k IN ('\x00'::bytea, '\xff00ff'::bytea, '\x01'::bytea) ORDER BY 1;
EXPLAIN (COSTS OFF) SELECT * FROM kb WHERE k LIKE '\x090a25'::bytea;
SELECT encode(k, 'hex') FROM kb WHERE k LIKE '\x090a25'::bytea;
UPDATE kb SET v = '\x0000' WHERE k = '\x00'::bytea;
SELECT encode(v, 'hex') FROM kb WHERE k = '\x00'::bytea;
-- binary data read through a text column is an error
CREATE FOREIGN TABLE kv1 (key text, value text) SERVER kt OPTIONS (db '1');
SELECT * FROM kv1 ORDER BY key;
SELECT * FROM kv1 WHERE key = 'plain';
DELETE FROM kb;
SELECT count(*) FROM kb;

-- the second KT database is separate from the first
INSERT INTO kv1 VALUES ('apple', 'other db');
SELECT * FROM kv1 ORDER BY key;
SELECT * FROM kv WHERE key = 'apple';
CREATE FOREIGN TABLE kv_nodb (key text, value text) SERVER kt OPTIONS (db 'nosuchdb');
SELECT * FROM kv_nodb;

-- pushdowns
INSERT INTO kv SELECT 'item' || lpad(i::text, 3, '0'), 'v' || i FROM generate_series(1, 120) i;
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key = 'apple';
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key IN ('apple', 'cherry', 'nope');
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key = ANY (ARRAY['apple', 'x']);
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key LIKE 'item1%';
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key LIKE 'item\_1%';
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE key ILIKE 'item1%';
EXPLAIN (COSTS OFF) SELECT * FROM kv WHERE value = 'v1';
SELECT * FROM kv WHERE key = 'apple';
SELECT * FROM kv WHERE key = 'nope';
SELECT * FROM kv WHERE key IN ('apple', 'cherry', 'nope', 'apple') ORDER BY key;
SELECT * FROM kv WHERE key = ANY ('{}'::text[]) ORDER BY key;
SELECT * FROM kv WHERE key LIKE 'item11%' ORDER BY key;
SELECT count(*) FROM kv WHERE key LIKE 'item%';
SELECT * FROM kv WHERE key LIKE 'item%9' ORDER BY key;
SELECT * FROM kv WHERE key LIKE 'zzz%' ORDER BY key;
SELECT count(*), min(key COLLATE "C"), max(key COLLATE "C") FROM kv;
PREPARE q1(text) AS SELECT * FROM kv WHERE key = $1;
EXECUTE q1('cherry');
EXECUTE q1('item007');
PREPARE q2(text[]) AS SELECT * FROM kv WHERE key = ANY ($1) ORDER BY key;
EXECUTE q2(ARRAY['item001', 'item002']);
-- EXPLAIN VERBOSE shows the server and db (the port is masked)
CREATE FUNCTION explain_masked(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE l text;
BEGIN
  FOR l IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
    RETURN NEXT regexp_replace(l, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT');
  END LOOP;
END $$;
SELECT explain_masked('SELECT * FROM kv1 WHERE key IN (''a'', ''b'')');
SELECT explain_masked('SELECT * FROM kv');

-- joins: re-scans and parameterized lookups
CREATE TEMP TABLE wanted (k text, note text);
INSERT INTO wanted VALUES ('apple', 'w1'), ('item050', 'w2'), ('missing', 'w3'), ('item050', 'w4');
ANALYZE wanted;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
SET enable_memoize = off;
EXPLAIN (COSTS OFF) SELECT w.note, kv.* FROM wanted w JOIN kv ON kv.key = w.k;
SELECT w.note, kv.* FROM wanted w JOIN kv ON kv.key = w.k ORDER BY w.note;
SELECT w.note, kv.key FROM wanted w LEFT JOIN kv ON kv.key = w.k ORDER BY w.note;
-- no pushdown possible: the cursor scan is restarted for every outer row
EXPLAIN (COSTS OFF) SELECT w.note, kv.key FROM wanted w JOIN kv ON kv.value = 'v' || length(w.k);
SELECT w.note, kv.key FROM wanted w JOIN kv ON kv.value = 'v' || length(w.k) ORDER BY w.note;
SELECT w.note, (SELECT count(*) FROM kv WHERE kv.key LIKE 'item0%' AND kv.value <> w.note) FROM wanted w ORDER BY w.note;
SELECT w.note, kv.key FROM wanted w, LATERAL (SELECT * FROM kv WHERE kv.key > w.k ORDER BY kv.key LIMIT 2) kv ORDER BY 1, 2;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
RESET enable_memoize;

-- multi-row insert (batched, pipelined) and an error inside a batch
ALTER SERVER kt OPTIONS (ADD batch_size '50');
INSERT INTO kv SELECT 'batch' || i, 'b' || i FROM generate_series(1, 260) i;
SELECT count(*) FROM kv WHERE key LIKE 'batch%';
INSERT INTO kv SELECT 'more' || i, 'm' FROM generate_series(1, 40) i
  UNION ALL SELECT 'batch7', 'dup';
SELECT count(*) FROM kv WHERE key LIKE 'more%';
ALTER FOREIGN TABLE kv OPTIONS (ADD batch_size '1');
INSERT INTO kv VALUES ('single1', 's'), ('single2', 's');
ALTER FOREIGN TABLE kv OPTIONS (DROP batch_size);
DELETE FROM kv WHERE key LIKE 'batch%' OR key LIKE 'single%';
SELECT count(*) FROM kv;

-- upsert: INSERT stores with set, replacing an existing record
CREATE FOREIGN TABLE kv_up (key text, value text) SERVER kt OPTIONS (upsert 'true');
INSERT INTO kv VALUES ('up1', 'a');
INSERT INTO kv VALUES ('up1', 'b');
EXPLAIN (COSTS OFF) INSERT INTO kv VALUES ('up1', 'b');
EXPLAIN (COSTS OFF) INSERT INTO kv_up VALUES ('up1', 'b');
EXPLAIN (COSTS OFF) UPDATE kv_up SET value = 'x' WHERE key = 'up1';
INSERT INTO kv_up VALUES ('up1', 'b');
SELECT * FROM kv WHERE key LIKE 'up%' ORDER BY key;
-- batched: new and existing keys, and a key twice in one batch (the last wins)
INSERT INTO kv_up SELECT 'up' || i, 'batch' || i FROM generate_series(1, 4) i;
INSERT INTO kv_up VALUES ('up2', 'first'), ('up5', 'new'), ('up2', 'second');
SELECT * FROM kv WHERE key LIKE 'up%' ORDER BY key;
-- one request per row
ALTER FOREIGN TABLE kv_up OPTIONS (ADD batch_size '1');
INSERT INTO kv_up VALUES ('up3', 'single'), ('up6', 'single');
SELECT * FROM kv WHERE key LIKE 'up%' ORDER BY key;
-- UPDATE and DELETE are unchanged
UPDATE kv_up SET value = 'updated' WHERE key = 'up4';
UPDATE kv_up SET value = 'never' WHERE key = 'up9';
DELETE FROM kv_up WHERE key IN ('up5', 'up9');
SELECT * FROM kv WHERE key LIKE 'up%' ORDER BY key;
-- the server option; the table's value wins
ALTER FOREIGN TABLE kv_up OPTIONS (SET upsert 'off');
INSERT INTO kv_up VALUES ('up1', 'dup');
ALTER SERVER kt OPTIONS (ADD upsert 'on');
INSERT INTO kv_up VALUES ('up1', 'dup');
INSERT INTO kv VALUES ('up1', 'server'), ('up7', 'server');
ALTER FOREIGN TABLE kv_up OPTIONS (SET upsert 'sometimes');
ALTER SERVER kt OPTIONS (SET upsert '1x');
ALTER SERVER kt OPTIONS (DROP upsert);
INSERT INTO kv VALUES ('up1', 'again');
SELECT * FROM kv WHERE key LIKE 'up%' ORDER BY key;
DELETE FROM kv WHERE key LIKE 'up%';
DROP FOREIGN TABLE kv_up;

-- transactions
BEGIN;
INSERT INTO kv VALUES ('tx1', 'a');
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
COMMIT;
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
BEGIN;
INSERT INTO kv VALUES ('tx2', 'b');
UPDATE kv SET value = 'changed' WHERE key = 'tx1';
DELETE FROM kv WHERE key = 'apple';
SELECT * FROM kv WHERE key LIKE 'tx%' OR key = 'apple' ORDER BY key;
ROLLBACK;
SELECT * FROM kv WHERE key LIKE 'tx%' OR key = 'apple' ORDER BY key;
-- an error inside the statement rolls the KT transaction back
INSERT INTO kv VALUES ('tx3', 'c'), ('tx1', 'dup');
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
-- savepoints: reads are fine, rolled back writes doom the transaction
BEGIN;
INSERT INTO kv VALUES ('tx4', 'd');
SAVEPOINT s1;
SELECT * FROM kv WHERE key = 'tx4';
RELEASE SAVEPOINT s1;
SAVEPOINT s2;
INSERT INTO kv VALUES ('tx5', 'e');
RELEASE SAVEPOINT s2;
COMMIT;
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
BEGIN;
INSERT INTO kv VALUES ('tx6', 'f');
SAVEPOINT s1;
INSERT INTO kv VALUES ('tx7', 'g');
ROLLBACK TO SAVEPOINT s1;
SELECT 1 AS still_running;
COMMIT;
BEGIN;
INSERT INTO kv VALUES ('tx6', 'f');
SAVEPOINT s1;
UPDATE kv SET value = 'x' WHERE key = 'tx1';
ROLLBACK TO SAVEPOINT s1;
SELECT * FROM kv WHERE key = 'tx6';
ROLLBACK;
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
-- a KT transaction begun inside a savepoint is undone with it
BEGIN;
SAVEPOINT s1;
INSERT INTO kv VALUES ('tx8', 'h');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO kv VALUES ('tx9', 'i');
COMMIT;
SELECT * FROM kv WHERE key LIKE 'tx%' ORDER BY key;
-- PL/pgSQL exception blocks are subtransactions too
DO $$
BEGIN
  INSERT INTO kv VALUES ('tx10', 'j');
  RAISE EXCEPTION 'fail on purpose';
EXCEPTION WHEN raise_exception THEN
  RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT * FROM kv WHERE key LIKE 'tx1%' ORDER BY key;
BEGIN;
INSERT INTO kv VALUES ('tx11', 'k');
PREPARE TRANSACTION 'kt_fdw_test';
SELECT * FROM kv WHERE key LIKE 'tx1%' ORDER BY key;

-- without KT transactions every request is applied at once
CREATE SERVER kt_notx FOREIGN DATA WRAPPER kt_fdw
  OPTIONS (host '127.0.0.1', port :'kt_port', use_transactions 'false');
CREATE USER MAPPING FOR PUBLIC SERVER kt_notx;
CREATE FOREIGN TABLE kv_notx (key text, value text) SERVER kt_notx;
BEGIN;
INSERT INTO kv_notx VALUES ('notx1', 'kept');
ROLLBACK;
SELECT * FROM kv_notx WHERE key LIKE 'notx%' ORDER BY key;
BEGIN;
SAVEPOINT s1;
INSERT INTO kv_notx VALUES ('notx2', 'kept too');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT * FROM kv_notx WHERE key LIKE 'notx%' ORDER BY key;

-- unreachable server: a clear, prompt error
CREATE SERVER kt_dead FOREIGN DATA WRAPPER kt_fdw
  OPTIONS (host '127.0.0.1', port '1', timeout '2');
CREATE USER MAPPING FOR PUBLIC SERVER kt_dead;
CREATE FOREIGN TABLE kv_dead (key text, value text) SERVER kt_dead;
DO $$
BEGIN
  PERFORM * FROM kv_dead;
EXCEPTION WHEN fdw_unable_to_establish_connection THEN
  RAISE NOTICE 'sqlstate %: %', SQLSTATE, split_part(SQLERRM, ':', 1);
END $$;
DO $$
BEGIN
  INSERT INTO kv_dead VALUES ('a', 'b');
EXCEPTION WHEN fdw_unable_to_establish_connection THEN
  RAISE NOTICE 'sqlstate %: %', SQLSTATE, split_part(SQLERRM, ':', 1);
END $$;

-- ALTER SERVER takes effect in this session
ALTER SERVER kt_dead OPTIONS (SET port :'kt_port');
SELECT * FROM kv_dead WHERE key = 'apple';
ALTER SERVER kt_dead OPTIONS (SET port '1');
DO $$
BEGIN
  PERFORM * FROM kv_dead WHERE key = 'apple';
EXCEPTION WHEN fdw_unable_to_establish_connection THEN
  RAISE NOTICE 'sqlstate %: %', SQLSTATE, split_part(SQLERRM, ':', 1);
END $$;
ALTER SERVER kt_dead OPTIONS (SET port :'kt_port', SET timeout '-1');
SELECT * FROM kv_dead WHERE key = 'cherry';
-- switching KT transactions on in a live session
ALTER SERVER kt_notx OPTIONS (SET use_transactions 'true');
SELECT count(*) > 0 AS works FROM kv_notx;

-- clean up
DROP EXTENSION kt_fdw CASCADE;
