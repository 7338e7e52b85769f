package store

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The block cache holds blocks once the memtables have rotated: Pebble charges its
// memtables to the same cache, and a cache sized for the blocks alone once held none
// (every read decoded its blocks afresh; the metrics said hits 0, bytes 0).
func TestOpen_BlockCacheSurvivesMemtables(t *testing.T) {
	for _, arg := range []string{"x.kct"} { // on-memory databases have no block cache
		t.Run(arg, func(t *testing.T) {
			spec, err := ParseSpec(arg)
			if err != nil {
				t.Fatal(err)
			}
			db, err := Open(Config{Spec: spec, FS: vfs.NewMem(), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const n = 1 << 19 // ~75 MiB through the memtables: more than one rotation
			value := make([]byte, 100)
			recs := make([]Record, 0, 4096)
			for i := 0; i < n; i++ {
				recs = append(recs, Record{Key: fmt.Appendf(nil, "k%08d", i), Value: value, XT: NoXT})
				if len(recs) == cap(recs) {
					if _, err := db.SetBulk(recs, false); err != nil {
						t.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			if err := db.pebbleDB().Flush(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i += 7 {
				if _, _, err := db.Get(fmt.Appendf(nil, "k%08d", i)); err != nil {
					t.Fatal(err)
				}
			}
			m := db.EngineMetrics()
			if m["block_cache_bytes"] == 0 || m["block_cache_hits"] < m["block_cache_misses"] {
				t.Fatalf("block cache holds %v bytes: %v hits, %v misses", m["block_cache_bytes"], m["block_cache_hits"], m["block_cache_misses"])
			}
		})
	}
}
