package fdwbridge

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// The pipeline's speed, measured with `make bench-fdw`: PostgreSQL (local,
// fsync off, so that KT's cost shows) with kt_fdw in front of an in-process
// ktd on a synced file database with an update log, as a master runs.
//
//	BenchmarkOneTx          10 000 rows in one transaction (rows/s)
//	BenchmarkAutocommit     single-row autocommit INSERTs (rows/s), 1 and 4 sessions
//
// each through the foreign table directly and through the rules table of
// the pipeline (statement triggers writing to kt_rules).

// benchKT starts a durable ktd (synced file database, update log) for b.
func benchKT(b *testing.B) int {
	b.Helper()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", filepath.Join(b.TempDir(), "rules.kct")}
	cfg.ULog = true
	cfg.SID = 1
	_, addr := kttest.StartServer(b, cfg)
	_, p, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(p)
	if err != nil {
		b.Fatal(err)
	}
	return port
}

// benchTarget is where a benchmark writes: the pipeline's rules table or
// its foreign table kt_rules directly.
type benchTarget struct {
	name, table, keyCol string
}

var benchTargets = []benchTarget{
	{"direct", ForeignTableName, "key"},
	{"pipeline", RulesTableName, "id"},
}

// benchSetup creates the pipeline against a fresh ktd and returns a
// connection whose search_path holds it.
func benchSetup(b *testing.B) (*Postgres, *pgx.Conn, string) {
	b.Helper()
	pg := sharedPostgres(b)
	installExtension(b, pg)
	conn := schemaConn(b, pg)
	ctx := testCtx(b, time.Minute)
	if err := SetupPipeline(ctx, conn, KT{Host: "127.0.0.1", Port: benchKT(b), DB: "1"}); err != nil {
		b.Fatal(err)
	}
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		b.Fatal(err)
	}
	return pg, conn, schema
}

func BenchmarkOneTx(b *testing.B) {
	const rows = 10000
	for _, tg := range benchTargets {
		b.Run(tg.name, func(b *testing.B) {
			_, conn, _ := benchSetup(b)
			ctx := testCtx(b, 10*time.Minute)
			value := strings.Repeat("v", 200)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				sql := fmt.Sprintf("INSERT INTO %s (%s, value) SELECT 'r%d-' || g, $1 FROM generate_series(1, %d) g",
					tg.table, tg.keyCol, i, rows)
				if _, err := conn.Exec(ctx, sql, value); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkAutocommit(b *testing.B) {
	for _, tg := range benchTargets {
		for _, sessions := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/sessions=%d", tg.name, sessions), func(b *testing.B) {
				pg, _, schema := benchSetup(b)
				ctx := testCtx(b, 10*time.Minute)
				conns := make(chan *pgx.Conn, sessions)
				for range sessions {
					c, err := pg.Connect(ctx)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close(ctx)
					if _, err := c.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
						b.Fatal(err)
					}
					conns <- c
				}
				sql := fmt.Sprintf("INSERT INTO %s (%s, value) VALUES ($1, $2)", tg.table, tg.keyCol)
				value := strings.Repeat("v", 200)
				var seq atomic.Int64
				b.SetParallelism((sessions + 1) / 2) // GOMAXPROCS is 2 here: sessions goroutines
				b.ResetTimer()
				b.RunParallel(func(p *testing.PB) {
					c := <-conns
					defer func() { conns <- c }()
					for p.Next() {
						if _, err := c.Exec(ctx, sql, "a"+strconv.FormatInt(seq.Add(1), 10), value); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
