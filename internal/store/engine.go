package store

// EngineMetrics returns a few of Pebble's own figures for the database,
// by name, for export as metrics: disk usage, memtable and block cache
// sizes, compaction and flush counts, L0 files, read amplification and
// the WAL's size.
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
	return map[string]float64{
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
	}
}
