package fdwbridge

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// ktDB is the KT database the pipeline tests write to: not the default
// one, so that the db table option is exercised.
const ktDB = "1"

// startKT starts an in-process ktd with two on-memory databases and
// returns its address and port.
func startKT(t *testing.T) (addr string, port int) {
	t.Helper()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", "*"}
	_, addr = kttest.StartServer(t, cfg)
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err = strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return addr, port
}

// ktContents returns the records of KT database db whose keys are in keys.
func ktContents(t *testing.T, c *kttest.Client, db string, keys ...string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	for _, k := range keys {
		r := c.RPC("get", "key", k, "DB", db)
		switch r.Code {
		case 200:
			got[k] = r.TSV()["value"]
		case 450:
		default:
			t.Fatalf("get %q from DB %s: %d %q", k, db, r.Code, r.Body)
		}
	}
	return got
}

// pipelineTriggers returns the user triggers on rules as "name:level",
// level being row or statement.
func pipelineTriggers(ctx context.Context, t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT tgname, CASE WHEN tgtype & 1 = 1 THEN 'row' ELSE 'statement' END
		FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname`, RulesTableName)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var name, level string
	if _, err := pgx.ForEachRow(rows, []any{&name, &level}, func() error {
		got = append(got, name+":"+level)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// foreignTableOptions returns the options of kt_rules in the current schema.
func foreignTableOptions(ctx context.Context, t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	var opts []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(ftoptions, '{}') FROM pg_foreign_table WHERE ftrelid = $1::regclass`,
		ForeignTableName).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	return opts
}

var wantTriggers = []string{
	"rules_no_truncate:statement",
	"rules_to_kt_delete:statement",
	"rules_to_kt_insert:statement",
	"rules_to_kt_update:statement",
}

// ktCount returns the number of records in KT database db.
func ktCount(t *testing.T, c *kttest.Client, db string) int {
	t.Helper()
	r := c.RPC("status", "DB", db)
	n, err := strconv.Atoi(r.TSV()["count"])
	if r.Code != 200 || err != nil {
		t.Fatalf("status DB %s: %d %q", db, r.Code, r.Body)
	}
	return n
}

func TestSetupPipeline(t *testing.T) {
	pg := sharedPostgres(t)
	installExtension(t, pg)
	addr, port := startKT(t)
	kc := kttest.Dial(t, addr)
	conn := schemaConn(t, pg)
	ctx := testCtx(t, 2*time.Minute)

	kt := KT{Host: pg.KTHost(), Port: port, DB: ktDB, Timeout: 10}
	for i := range 2 { // idempotent
		if err := SetupPipeline(ctx, conn, kt); err != nil {
			t.Fatalf("SetupPipeline #%d: %v", i+1, err)
		}
	}
	if got := pipelineTriggers(ctx, t, conn); !reflect.DeepEqual(got, wantTriggers) {
		t.Fatalf("triggers on rules: %v, want %v", got, wantTriggers)
	}
	if got, want := foreignTableOptions(ctx, t, conn), []string{"db=" + ktDB, "upsert=true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("kt_rules options %v, want %v", got, want)
	}
	keys := []string{"a", "b", "c", "r"}
	execT := func(t *testing.T, sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	checkT := func(t *testing.T, what string, want map[string]string) {
		t.Helper()
		if got := ktContents(t, kc, ktDB, keys...); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s: KT DB %s holds %v, want %v", what, ktDB, got, want)
		}
		if got := ktCount(t, kc, ktDB); got != len(want) {
			t.Fatalf("after %s: KT DB %s has %d records, want %d", what, ktDB, got, len(want))
		}
	}
	exec := func(sql string, args ...any) { t.Helper(); execT(t, sql, args...) }
	check := func(what string, want map[string]string) { t.Helper(); checkT(t, what, want) }

	exec(`INSERT INTO rules (id, value) VALUES ('a', '1'), ('b', '2')`)
	check("insert", map[string]string{"a": "1", "b": "2"})
	if n := ktCount(t, kc, "0"); n != 0 {
		t.Errorf("KT DB 0 has %d records; the db option was ignored", n)
	}

	exec(`UPDATE rules SET value = '10' WHERE id = 'a'`)
	check("update of a value", map[string]string{"a": "10", "b": "2"})

	exec(`UPDATE rules SET id = 'c' WHERE id = 'b'`)
	check("update of an id", map[string]string{"a": "10", "c": "2"})

	exec(`DELETE FROM rules WHERE id = 'a'`)
	check("delete", map[string]string{"c": "2"})

	// Upsert through the trigger when KT already holds the key.
	if r := kc.RPC("set", "key", "r", "value", "stale", "DB", ktDB); r.Code != 200 {
		t.Fatalf("set: %d %q", r.Code, r.Body)
	}
	exec(`INSERT INTO rules (id, value) VALUES ('r', 'fresh')`)
	check("insert of a key KT had", map[string]string{"c": "2", "r": "fresh"})

	t.Run("Rollback", func(t *testing.T) {
		before := ktContents(t, kc, ktDB, keys...)
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range []string{
			`INSERT INTO rules (id, value) VALUES ('a', 'never')`,
			`UPDATE rules SET value = 'never' WHERE id = 'c'`,
			`DELETE FROM rules WHERE id = 'r'`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ktContents(t, kc, ktDB, keys...); !reflect.DeepEqual(got, before) {
			t.Fatalf("after rollback KT holds %v, want %v", got, before)
		}
	})

	t.Run("Commit", func(t *testing.T) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range []string{
			`INSERT INTO rules (id, value) VALUES ('a', 'tx')`,
			`UPDATE rules SET value = 'tx' WHERE id = 'c'`,
			`DELETE FROM rules WHERE id = 'r'`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		check("commit", map[string]string{"a": "tx", "c": "tx"})
	})

	t.Run("ForeignTableMatchesRules", func(t *testing.T) {
		q := func(sql string) map[string]string {
			rows, err := conn.Query(ctx, sql)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			m := make(map[string]string)
			var k, v string
			if _, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error { m[k] = v; return nil }); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return m
		}
		rules, remote := q(`SELECT id, value FROM rules`), q(`SELECT key, value FROM kt_rules`)
		if !reflect.DeepEqual(rules, remote) {
			t.Errorf("rules = %v, kt_rules = %v", rules, remote)
		}
	})

	t.Run("TruncateRefused", func(t *testing.T) {
		_, err := conn.Exec(ctx, `TRUNCATE rules`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
			t.Fatalf("TRUNCATE rules: %v, want feature_not_supported", err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM rules`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("rules after refused TRUNCATE: %d rows, %v", n, err)
		}
	})

	// Statement triggers write the rows of each statement as a set; the
	// following subtests use keys of their own and remove them again.
	t.Run("ManyRows", func(t *testing.T) {
		const n = 1000
		execT(t, `INSERT INTO rules (id, value) SELECT 'm' || i, 'v' || i FROM generate_series(1, $1::int) i`, n)
		if got := ktCount(t, kc, ktDB); got != n+2 {
			t.Fatalf("after inserting %d rows KT has %d records, want %d", n, got, n+2)
		}
		execT(t, `UPDATE rules SET value = value || '!' WHERE id LIKE 'm%'`)
		// ids move: m1..m10 become n1..n10; m11 moves and changes its value
		execT(t, `UPDATE rules SET id = 'n' || substr(id, 2) WHERE id IN (SELECT 'm' || i FROM generate_series(1, 10) i)`)
		execT(t, `UPDATE rules SET id = 'n11', value = 'moved' WHERE id = 'm11'`)
		want := map[string]string{"m1": "", "n1": "v1!", "n10": "v10!", "m10": "", "m11": "", "n11": "moved", "m12": "v12!", "m1000": "v1000!"}
		probe := make([]string, 0, len(want))
		for k, v := range want {
			probe = append(probe, k)
			if v == "" {
				delete(want, k)
			}
		}
		if got := ktContents(t, kc, ktDB, probe...); !reflect.DeepEqual(got, want) {
			t.Fatalf("after updates KT holds %v, want %v", got, want)
		}
		if got := ktCount(t, kc, ktDB); got != n+2 {
			t.Fatalf("after updates KT has %d records, want %d", got, n+2)
		}
		execT(t, `DELETE FROM rules WHERE id LIKE 'm%' OR id LIKE 'n%'`)
		checkT(t, "deleting them", map[string]string{"a": "tx", "c": "tx"})
	})

	t.Run("ToggleEndsOff", func(t *testing.T) {
		// in successive statements of one transaction
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range []string{
			`INSERT INTO rules (id, value) VALUES ('t', 'on')`,
			`UPDATE rules SET value = 'off' WHERE id = 't'`,
			`UPDATE rules SET value = 'on' WHERE id = 't'`,
			`UPDATE rules SET value = 'off' WHERE id = 't'`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ktContents(t, kc, ktDB, "t"); got["t"] != "off" {
			t.Fatalf("after on, off, on, off in one transaction KT holds %v", got)
		}
		// in successive transactions, and delete then re-insert
		execT(t, `UPDATE rules SET value = 'on' WHERE id = 't'`)
		execT(t, `UPDATE rules SET value = 'off' WHERE id = 't'`)
		execT(t, `DELETE FROM rules WHERE id = 't'`)
		execT(t, `INSERT INTO rules (id, value) VALUES ('t', 'on')`)
		execT(t, `UPDATE rules SET value = 'off' WHERE id = 't'`)
		if got := ktContents(t, kc, ktDB, "t"); got["t"] != "off" {
			t.Fatalf("after toggles in successive transactions KT holds %v", got)
		}
		execT(t, `DELETE FROM rules WHERE id = 't'`)
		checkT(t, "deleting t", map[string]string{"a": "tx", "c": "tx"})
	})

	t.Run("DeleteUsesGetBulk", func(t *testing.T) {
		// the shape of the triggers' DELETE: its keys are looked up with
		// get_bulk, not found by a cursor scan of the whole database
		rows, err := conn.Query(ctx, `EXPLAIN (COSTS OFF) DELETE FROM kt_rules WHERE key = ANY (ARRAY(SELECT id FROM rules))`)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		var line string
		if _, err := pgx.ForEachRow(rows, []any{&line}, func() error { plan = append(plan, line); return nil }); err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(plan, "\n"); !strings.Contains(text, "KT operation: get_bulk") {
			t.Fatalf("plan of the delete:\n%s", text)
		}
	})

	t.Run("MovedToAnotherKT", func(t *testing.T) {
		addr2, port2 := startKT(t)
		kc2 := kttest.Dial(t, addr2)
		if err := SetupPipeline(ctx, conn, KT{Host: pg.KTHost(), Port: port2}); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO rules (id, value) VALUES ('b', 'moved')`); err != nil {
			t.Fatal(err)
		}
		// No db option any more: the default database.
		if got, want := ktContents(t, kc2, "0", "b"), map[string]string{"b": "moved"}; !reflect.DeepEqual(got, want) {
			t.Errorf("second KT holds %v, want %v", got, want)
		}
		if got := ktContents(t, kc, ktDB, "b"); len(got) != 0 {
			t.Errorf("first KT got %v after the move", got)
		}
	})
}

// TestSetupPipeline_Upgrade runs SetupPipeline on the schema of the
// previous version, with its row trigger and add semantics.
func TestSetupPipeline_Upgrade(t *testing.T) {
	pg := sharedPostgres(t)
	installExtension(t, pg)
	addr, port := startKT(t)
	kc := kttest.Dial(t, addr)
	conn := schemaConn(t, pg)
	ctx := testCtx(t, 2*time.Minute)

	kt := KT{Host: pg.KTHost(), Port: port, DB: ktDB}
	if err := SetupPipeline(ctx, conn, kt); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`DROP TRIGGER rules_to_kt_insert ON rules`,
		`DROP TRIGGER rules_to_kt_update ON rules`,
		`DROP TRIGGER rules_to_kt_delete ON rules`,
		`ALTER FOREIGN TABLE kt_rules OPTIONS (DROP upsert)`,
		`CREATE OR REPLACE FUNCTION rules_to_kt() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	IF TG_OP = 'DELETE' THEN
		DELETE FROM kt_rules WHERE key = OLD.id;
		RETURN OLD;
	END IF;
	IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
		DELETE FROM kt_rules WHERE key = OLD.id;
	END IF;
	UPDATE kt_rules SET value = NEW.value WHERE key = NEW.id;
	IF NOT FOUND THEN
		INSERT INTO kt_rules (key, value) VALUES (NEW.id, NEW.value);
	END IF;
	RETURN NEW;
END
$fn$`,
		`CREATE TRIGGER rules_to_kt AFTER INSERT OR UPDATE OR DELETE ON rules FOR EACH ROW EXECUTE FUNCTION rules_to_kt()`,
		`INSERT INTO rules (id, value) VALUES ('old', 'row trigger')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if got := pipelineTriggers(ctx, t, conn); !reflect.DeepEqual(got, []string{"rules_no_truncate:statement", "rules_to_kt:row"}) {
		t.Fatalf("old schema has triggers %v", got)
	}

	if err := SetupPipeline(ctx, conn, kt); err != nil {
		t.Fatalf("SetupPipeline on the old schema: %v", err)
	}
	if got := pipelineTriggers(ctx, t, conn); !reflect.DeepEqual(got, wantTriggers) {
		t.Fatalf("after the upgrade: triggers %v, want %v", got, wantTriggers)
	}
	if got, want := foreignTableOptions(ctx, t, conn), []string{"db=" + ktDB, "upsert=true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the upgrade: kt_rules options %v, want %v", got, want)
	}
	for i, sql := range []string{
		`UPDATE rules SET value = 'statement trigger' WHERE id = 'old'`,
		`INSERT INTO rules (id, value) VALUES ('new', 'x')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		// each change is written once: no row trigger is left
		if got, want := ktCount(t, kc, ktDB), i+1; got != want {
			t.Fatalf("after %s: KT has %d records, want %d", sql, got, want)
		}
	}
	want := map[string]string{"old": "statement trigger", "new": "x"}
	if got := ktContents(t, kc, ktDB, "old", "new"); !reflect.DeepEqual(got, want) {
		t.Fatalf("KT holds %v, want %v", got, want)
	}
}

func TestSetupPipeline_NeedsKT(t *testing.T) {
	if err := SetupPipeline(t.Context(), nil, KT{}); err == nil {
		t.Fatal("SetupPipeline without a KT address succeeded")
	}
}

func TestAlterOptions(t *testing.T) {
	for _, tt := range []struct {
		cur  []string
		want map[string]string
		out  string
	}{
		{nil, map[string]string{"host": "h", "port": "1"}, ` OPTIONS (ADD "host" 'h', ADD "port" '1')`},
		{[]string{"host=h", "port=1"}, map[string]string{"host": "h", "port": "1"}, ``},
		{[]string{"host=h", "port=1", "timeout=5"}, map[string]string{"host": "h", "port": "2", "timeout": ""}, ` OPTIONS (SET "port" '2', DROP "timeout")`},
		{[]string{"db=x"}, map[string]string{"db": "it's"}, ` OPTIONS (SET "db" 'it''s')`},
		{nil, map[string]string{"db": ""}, ``},
	} {
		if got := alterOptions(tt.cur, tt.want); got != tt.out {
			t.Errorf("alterOptions(%q, %v) = %q, want %q", tt.cur, tt.want, got, tt.out)
		}
	}
	if got, want := createOptions(map[string]string{"port": "1", "host": "h", "timeout": ""}), ` OPTIONS ("host" 'h', "port" '1')`; got != want {
		t.Errorf("createOptions = %q, want %q", got, want)
	}
	if got := createOptions(map[string]string{"db": ""}); got != "" {
		t.Errorf("createOptions(no db) = %q, want empty", got)
	}
}
