package fdwbridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Names of the pipeline's objects. The foreign server and user mapping are
// per database; the tables and functions live in the connection's current
// schema.
const (
	ServerName       = "kt_master"
	ForeignTableName = "kt_rules"
	RulesTableName   = "rules"
)

// KT is the Kyoto Tycoon (ktd) that kt_fdw writes to.
type KT struct {
	Host    string // as seen from inside PostgreSQL: Postgres.KTHost()
	Port    int
	DB      string // kt_fdw table option db (KT database name or index); "" = KT's default
	Timeout int    // kt_fdw server option timeout, in seconds; 0 = kt_fdw's default
	// SSLMode and SSLRootCert are kt_fdw's server options sslmode and
	// sslrootcert (a path the PostgreSQL server can read): "" = plain TCP.
	SSLMode, SSLRootCert string
}

// SetupPipeline creates the pipeline in conn's database, in one
// transaction, and is idempotent: run again with another KT it moves the
// existing objects there.
//
//   - extension kt_fdw (CREATE EXTENSION IF NOT EXISTS);
//   - foreign server kt_master with options host, port, timeout and, for a
//     TLS master, sslmode and sslrootcert, and a
//     user mapping for PUBLIC;
//   - in the current schema: foreign table kt_rules(key text, value text)
//     with option upsert 'true' (INSERT stores with KT's set) and option
//     db when KT.DB is set; table rules(id text PRIMARY KEY, value text
//     NOT NULL); trigger function rules_to_kt(), run by three
//     statement-level AFTER triggers on rules (rules_to_kt_insert,
//     rules_to_kt_update, rules_to_kt_delete; PostgreSQL allows transition
//     tables only on single-event triggers), which writes each
//     statement's changed rows through kt_rules as a set: inserted and
//     updated rows with one INSERT ... SELECT (pipelined batches of sets),
//     deleted rows and the old ids of updates that changed ids with one
//     DELETE whose keys kt_fdw looks up with get_bulk; and a BEFORE
//     TRUNCATE trigger that refuses TRUNCATE, which would bypass the
//     triggers.
//
// Statement triggers fire at the end of each statement, so changes reach
// KT in statement order. The trigger function has no exception blocks:
// kt_fdw forbids subtransactions. kt_fdw turns the transaction around
// each change into a KT transaction, so a rolled-back change never
// reaches KT.
//
// A schema made by an earlier version, with the row trigger rules_to_kt,
// is upgraded: that trigger is dropped.
func SetupPipeline(ctx context.Context, conn *pgx.Conn, kt KT) error {
	if kt.Host == "" || kt.Port <= 0 {
		return fmt.Errorf("fdwbridge: SetupPipeline needs a KT host and port, got %q:%d", kt.Host, kt.Port)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fdwbridge: setup pipeline: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit

	var schema string
	if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("fdwbridge: setup pipeline: current schema: %w", err)
	}
	if schema == "" {
		return fmt.Errorf("fdwbridge: setup pipeline: no current schema (search_path names no existing schema)")
	}
	q := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	server := pgx.Identifier{ServerName}.Sanitize()

	serverOpts := map[string]string{"host": kt.Host, "port": strconv.Itoa(kt.Port)}
	if kt.Timeout > 0 {
		serverOpts["timeout"] = strconv.Itoa(kt.Timeout)
	} else {
		serverOpts["timeout"] = ""
	}
	serverOpts["sslmode"], serverOpts["sslrootcert"] = kt.SSLMode, kt.SSLRootCert
	tableOpts := map[string]string{"db": kt.DB, "upsert": "true"}

	steps := []struct {
		what string
		sql  func() (string, error)
	}{
		{"create extension kt_fdw", static(`CREATE EXTENSION IF NOT EXISTS kt_fdw`)},
		{"create server " + ServerName, func() (string, error) {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = $1)`, ServerName).Scan(&exists); err != nil {
				return "", err
			}
			if !exists {
				return `CREATE SERVER ` + server + ` FOREIGN DATA WRAPPER kt_fdw` + createOptions(serverOpts), nil
			}
			var cur []string
			if err := tx.QueryRow(ctx, `SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = $1`, ServerName).Scan(&cur); err != nil {
				return "", err
			}
			if alter := alterOptions(cur, serverOpts); alter != "" {
				return `ALTER SERVER ` + server + alter, nil
			}
			return "", nil
		}},
		{"create user mapping", static(`CREATE USER MAPPING IF NOT EXISTS FOR PUBLIC SERVER ` + server)},
		{"create foreign table " + ForeignTableName, func() (string, error) {
			var cur []string
			err := tx.QueryRow(ctx, `SELECT coalesce(ft.ftoptions, '{}') FROM pg_foreign_table ft
				JOIN pg_class c ON c.oid = ft.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relname = $2`, schema, ForeignTableName).Scan(&cur)
			if errors.Is(err, pgx.ErrNoRows) {
				return `CREATE FOREIGN TABLE ` + q(ForeignTableName) + ` (key text, value text) SERVER ` + server + createOptions(tableOpts), nil
			}
			if err != nil {
				return "", err
			}
			if alter := alterOptions(cur, tableOpts); alter != "" {
				return `ALTER FOREIGN TABLE ` + q(ForeignTableName) + alter, nil
			}
			return "", nil
		}},
		{"create table " + RulesTableName, static(`CREATE TABLE IF NOT EXISTS ` + q(RulesTableName) + ` (
			id         text PRIMARY KEY,
			value      text NOT NULL
		)`)},
		{"create function rules_to_kt", static(`CREATE OR REPLACE FUNCTION ` + q("rules_to_kt") + `() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- Writes the rows changed by one statement on rules through the foreign
-- table into KT, as sets. kt_rules has upsert on, so its INSERT is KT's
-- set whether or not KT holds the key. key = ANY (ARRAY(subquery)) makes
-- kt_fdw look the keys up with get_bulk instead of scanning KT. No
-- EXCEPTION blocks: kt_fdw forbids subtransactions.
BEGIN
	IF TG_OP = 'DELETE' THEN
		DELETE FROM ` + q(ForeignTableName) + ` WHERE key = ANY (ARRAY(SELECT id FROM old_rows));
		RETURN NULL;
	END IF;
	IF TG_OP = 'UPDATE' THEN
		-- ids the statement changed away from
		DELETE FROM ` + q(ForeignTableName) + ` WHERE key = ANY (ARRAY(
			SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows));
	END IF;
	INSERT INTO ` + q(ForeignTableName) + ` (key, value) SELECT id, value FROM new_rows;
	RETURN NULL;
END
$fn$`)},
		{"create function rules_no_truncate", static(`CREATE OR REPLACE FUNCTION ` + q("rules_no_truncate") + `() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	RAISE EXCEPTION 'TRUNCATE of % would bypass the triggers that write to KT', TG_TABLE_NAME
		USING ERRCODE = 'feature_not_supported', HINT = 'Use DELETE FROM ' || TG_TABLE_NAME || '.';
END
$fn$`)},
		// the row trigger of earlier versions
		{"drop trigger rules_to_kt", static(`DROP TRIGGER IF EXISTS rules_to_kt ON ` + q(RulesTableName))},
		{"replace trigger rules_to_kt_insert", static(`DROP TRIGGER IF EXISTS rules_to_kt_insert ON ` + q(RulesTableName))},
		{"create trigger rules_to_kt_insert", static(`CREATE TRIGGER rules_to_kt_insert AFTER INSERT ON ` + q(RulesTableName) +
			` REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ` + q("rules_to_kt") + `()`)},
		{"replace trigger rules_to_kt_update", static(`DROP TRIGGER IF EXISTS rules_to_kt_update ON ` + q(RulesTableName))},
		{"create trigger rules_to_kt_update", static(`CREATE TRIGGER rules_to_kt_update AFTER UPDATE ON ` + q(RulesTableName) +
			` REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ` + q("rules_to_kt") + `()`)},
		{"replace trigger rules_to_kt_delete", static(`DROP TRIGGER IF EXISTS rules_to_kt_delete ON ` + q(RulesTableName))},
		{"create trigger rules_to_kt_delete", static(`CREATE TRIGGER rules_to_kt_delete AFTER DELETE ON ` + q(RulesTableName) +
			` REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ` + q("rules_to_kt") + `()`)},
		{"replace trigger rules_no_truncate", static(`DROP TRIGGER IF EXISTS rules_no_truncate ON ` + q(RulesTableName))},
		{"create trigger rules_no_truncate", static(`CREATE TRIGGER rules_no_truncate BEFORE TRUNCATE ON ` + q(RulesTableName) +
			` FOR EACH STATEMENT EXECUTE FUNCTION ` + q("rules_no_truncate") + `()`)},
	}
	for _, step := range steps {
		sql, err := step.sql()
		if err == nil && sql != "" {
			_, err = tx.Exec(ctx, sql)
		}
		if err != nil {
			return fmt.Errorf("fdwbridge: setup pipeline: %s: %w", step.what, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fdwbridge: setup pipeline: commit: %w", err)
	}
	return nil
}

// DropPipeline removes what SetupPipeline created in the current schema,
// and the foreign server with its user mapping; the extension stays. The
// KT contents are not touched.
func DropPipeline(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fdwbridge: drop pipeline: %w", err)
	}
	defer tx.Rollback(ctx) // a no-op after Commit
	var schema string
	if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("fdwbridge: drop pipeline: current schema: %w", err)
	}
	q := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	for _, sql := range []string{
		`DROP TABLE IF EXISTS ` + q(RulesTableName),
		`DROP FUNCTION IF EXISTS ` + q("rules_to_kt") + `()`,
		`DROP FUNCTION IF EXISTS ` + q("rules_no_truncate") + `()`,
		`DROP FOREIGN TABLE IF EXISTS ` + q(ForeignTableName),
		`DROP SERVER IF EXISTS ` + pgx.Identifier{ServerName}.Sanitize() + ` CASCADE`,
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("fdwbridge: drop pipeline: %s: %w", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fdwbridge: drop pipeline: commit: %w", err)
	}
	return nil
}

func static(sql string) func() (string, error) {
	return func() (string, error) { return sql, nil }
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings on).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// createOptions renders the OPTIONS clause of a CREATE for the non-empty
// values of want, in a fixed order.
func createOptions(want map[string]string) string {
	var parts []string
	for _, name := range sortedKeys(want) {
		if v := want[name]; v != "" {
			parts = append(parts, pgx.Identifier{name}.Sanitize()+" "+quoteLiteral(v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " OPTIONS (" + strings.Join(parts, ", ") + ")"
}

// alterOptions renders the OPTIONS clause of an ALTER that turns the
// current options cur ("name=value" as in the catalogs) into want, where
// an empty value means the option must be absent; "" when nothing changes.
func alterOptions(cur []string, want map[string]string) string {
	have := make(map[string]string, len(cur))
	for _, kv := range cur {
		k, v, _ := strings.Cut(kv, "=")
		have[k] = v
	}
	var parts []string
	for _, name := range sortedKeys(want) {
		v := want[name]
		old, ok := have[name]
		id := pgx.Identifier{name}.Sanitize()
		switch {
		case v == "" && ok:
			parts = append(parts, "DROP "+id)
		case v != "" && !ok:
			parts = append(parts, "ADD "+id+" "+quoteLiteral(v))
		case v != "" && old != v:
			parts = append(parts, "SET "+id+" "+quoteLiteral(v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " OPTIONS (" + strings.Join(parts, ", ") + ")"
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
