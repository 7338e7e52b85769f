package store

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// benchDB opens the DB a benchmark runs against: "mem" ('+'), "sync" or "nosync" (file).
func benchDB(b *testing.B, kind string) *DB {
	b.Helper()
	switch kind {
	case "mem":
		return openTest(b, "+", nil)
	default:
		path := filepath.Join(b.TempDir(), "bench.kct")
		return openTest(b, path, nil, func(c *Config) { c.NoSync = kind == "nosync" })
	}
}

func benchKey(buf []byte, i int) []byte {
	buf = append(buf[:0], "key"...)
	return binary.BigEndian.AppendUint64(buf, uint64(i))
}

func benchSet(b *testing.B, kind string) {
	db := benchDB(b, kind)
	value := make([]byte, 100)
	var kbuf []byte
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		kbuf = benchKey(kbuf, i%100000)
		if err := db.Set(kbuf, value, NoXT); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSetRandom_Mem and BenchmarkGetRandom_Mem are the on-memory set and
// get at 100 000 keys in random order, as under wrk: each lookup misses the
// CPU's caches, where the sequential keys above mostly hit them.
func BenchmarkSetRandom_Mem(b *testing.B) { benchRandom(b, false) }
func BenchmarkGetRandom_Mem(b *testing.B) { benchRandom(b, true) }

func benchRandom(b *testing.B, get bool) {
	db := benchDB(b, "mem")
	value := make([]byte, 100)
	const n = 100000
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: benchKey(nil, i), Value: value, XT: NoXT}
	}
	if _, err := db.SetBulk(recs, true); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var kbuf []byte
	b.ReportAllocs()
	for b.Loop() {
		kbuf = benchKey(kbuf, rng.IntN(n))
		var err error
		if get {
			_, _, err = db.Get(kbuf)
		} else {
			err = db.Set(kbuf, value, NoXT)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchGet(b *testing.B, kind string) {
	db := benchDB(b, kind)
	value := make([]byte, 100)
	const n = 10000
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: benchKey(nil, i), Value: value, XT: NoXT}
	}
	if _, err := db.SetBulk(recs, true); err != nil {
		b.Fatal(err)
	}
	var kbuf []byte
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		kbuf = benchKey(kbuf, i%n)
		if _, _, err := db.Get(kbuf); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkSet_Mem(b *testing.B)        { benchSet(b, "mem") }
func BenchmarkSet_FileSync(b *testing.B)   { benchSet(b, "sync") }
func BenchmarkSet_FileNoSync(b *testing.B) { benchSet(b, "nosync") }
func BenchmarkGet_Mem(b *testing.B)        { benchGet(b, "mem") }
func BenchmarkGet_File(b *testing.B)       { benchGet(b, "sync") }

// BenchmarkSetParallel measures synced sets from many goroutines on a file DB, where
// Pebble groups the fsyncs of concurrent commits.
func BenchmarkSetParallel(b *testing.B) {
	db := benchDB(b, "sync")
	value := make([]byte, 100)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.SetParallelism(16)
	var next atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		var kbuf []byte
		for pb.Next() {
			kbuf = benchKey(kbuf, int(next.add()%100000))
			if err := db.Set(kbuf, value, NoXT); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSetBulkKT replays ktremotetest's binary bulk set in process: 100-record
// batches of new keys "%08d" whose values are the keys, on a database cleared every
// 400 000 records. It reports records per second.
func BenchmarkSetBulkKT(b *testing.B) {
	for _, kind := range []string{"mem", "nosync", "sync"} {
		b.Run(kind, func(b *testing.B) {
			db := benchDB(b, kind)
			recs := make([]Record, 100)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				if n%400000 == 0 {
					if err := db.Clear(); err != nil {
						b.Fatal(err)
					}
				}
				for i := range recs {
					k := fmt.Appendf(recs[i].Key[:0], "%08d", n+i)
					recs[i] = Record{Key: k, Value: k, XT: NoXT}
				}
				n += len(recs)
				if _, err := db.SetBulk(recs, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
