package store

// EngineMetrics returns a few of Pebble's own figures for the database,
// by name, for export as metrics: disk usage, memtable and block cache
// sizes, compaction and flush counts, L0 files, read amplification, the
// WAL's size and the file cache's tables, hits and misses.
func (db *DB) EngineMetrics() map[string]float64 {
	if db.rlock() != nil {
		return nil
	}
	defer db.mu.RUnlock()
	p := db.pebbleDB()
	if p == nil {
		m := db.memDB()
		return map[string]float64{
			// The bytes of the keys and values held, as DiskUsage.
			"disk_usage_bytes": float64(m.Bytes()),
			"keys":             float64(m.Len()),
		}
	}
	m := p.Metrics()
	out := map[string]float64{
		"disk_usage_bytes":     float64(m.DiskSpaceUsage()),
		"memtable_bytes":       float64(m.MemTable.Size),
		"block_cache_bytes":    float64(m.BlockCache.Size),
		"block_cache_hits":     float64(m.BlockCache.Hits),
		"block_cache_misses":   float64(m.BlockCache.Misses),
		"compactions":          float64(m.Compact.Count),
		"flushes":              float64(m.Flush.Count),
		"l0_files":             float64(m.Levels[0].TablesCount),
		"read_amplification":   float64(m.ReadAmp()),
		"wal_bytes":            float64(m.WAL.Size),
		"table_iterators_open": float64(m.TableIters),
		// An sstable opened for a read because the file cache had no room for it
		// is a miss: a steady rate of them means MaxOpenFiles is too small.
		"file_cache_tables": float64(m.FileCache.TableCount),
		"file_cache_hits":   float64(m.FileCache.Hits),
		"file_cache_misses": float64(m.FileCache.Misses),
	}
	if db.rc != nil {
		// The row cache: reads it answered, reads that went to Pebble, what it holds.
		records, bytes := db.rc.stats()
		out["row_cache_hits"] = float64(db.rc.hits.Load())
		out["row_cache_misses"] = float64(db.rc.misses.Load())
		out["row_cache_records"] = float64(records)
		out["row_cache_bytes"] = float64(bytes)
	}
	return out
}
