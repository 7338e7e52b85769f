package store

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestOpenFilesShare(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		dbs   int
		want  int
	}{
		{0, 1, 1000},                // unknown limit: Pebble's default
		{20000, 1, 10000},           // half the limit
		{20000, 4, 2500},            // shared among the databases
		{65536, 1, 32768},           // packaging's LimitNOFILE
		{1024, 1, 1000},             // a small limit: never below the default
		{1 << 20, 1, 65536},         // a large one: at most 65 536
		{^uint64(0), 2, 65536},      // unlimited
		{20000, 0, 1000},            // no databases: the default
		{1 << 20, 1000, 1000},       // many databases: the default each
		{3 * 65536 * 2, 3, 65536},   // exactly the maximum each
		{2 * 3 * 1000, 3, 1000},     // exactly the minimum each
		{2*3*1000 + 6, 3, 1000 + 1}, // just above it
		{2*3*1000 - 6, 3, 1000},     // just below it
		{1 << 17, 1, 65536},         // half the limit is the maximum
		{1<<17 - 2, 1, 65536 - 1},   // just below it
		{1<<17 + 2, 1, 65536},       // just above it
		{4000, 2, 1000},             // the minimum, shared
		{4004, 2, 1001},             // just above it, shared
		{1 << 40, 1 << 30, 1000},    // a large limit among very many
	} {
		if got := OpenFilesShare(tc.limit, tc.dbs); got != tc.want {
			t.Errorf("OpenFilesShare(%d, %d) = %d, want %d", tc.limit, tc.dbs, got, tc.want)
		}
	}
	if l := OpenFilesLimit(); l == 0 {
		t.Errorf("OpenFilesLimit() = 0 on a system with an open-file limit")
	}
}

// A database with more sstables than Pebble's file cache has room for reopens a table
// on nearly every read of one it closed (at 20 M keys loaded in order, ~900 tables of
// 2.6 MB, that cost a third of the gets); with MaxOpenFiles above the table count, a
// second pass over the keys opens none.
func TestOpen_MaxOpenFilesHoldsEveryTable(t *testing.T) {
	const tables = 150
	for _, tc := range []struct {
		maxOpen int
		thrash  bool
	}{{100, true}, {1000, false}} {
		t.Run(fmt.Sprint("max=", tc.maxOpen), func(t *testing.T) {
			spec, err := ParseSpec("x.kct")
			if err != nil {
				t.Fatal(err)
			}
			db, err := Open(Config{Spec: spec, FS: vfs.NewMem(), NoSync: true, MaxOpenFiles: tc.maxOpen})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			p := db.pebbleDB()
			for i := range tables {
				mustSet(t, db, fmt.Sprintf("k%04d", i), "v", NoXT)
				if err := p.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			n := int64(0)
			for _, l := range p.Metrics().Levels {
				n += l.TablesCount
			}
			if n < tables {
				t.Fatalf("%d tables, want %d: the test needs one per key", n, tables)
			}
			pass := func() float64 {
				db.rc.reset() // every read goes to Pebble's tables
				for i := range tables {
					wantGet(t, db, fmt.Sprintf("k%04d", i), "v", XTMax)
				}
				return db.EngineMetrics()["file_cache_misses"]
			}
			first := pass()
			misses := pass() - first
			switch {
			case tc.thrash && misses < tables/2:
				t.Errorf("room for %d files, %d tables: the second pass opened %v tables, want most of them", tc.maxOpen, n, misses)
			case !tc.thrash && misses != 0:
				t.Errorf("room for %d files, %d tables: the second pass opened %v tables, want none", tc.maxOpen, n, misses)
			}
		})
	}
}
