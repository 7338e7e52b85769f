package store

// Open sstables. Pebble keeps a reader open for each sstable it reads (its file cache),
// up to MaxOpenFiles less a few; past that it closes one to open another, and a read of
// a table whose reader was closed opens the file again, reads its footer, properties
// and index, and closes another. A load in key order leaves sstables of 2–3 MB, which
// compactions move down the levels without rewriting them: 20 M keys of 100 bytes make
// ~900 tables, and from about 1 000 on (Pebble's default) every get paid for opening a
// file: at 20 M keys with room for 500 tables, 13–20 k gets/s at 74–116 µs of CPU each,
// against 24–27 k at 49–56 µs with room for all of them.

// openFilesMin and openFilesMax bound OpenFilesShare: Pebble's default, and 65 536
// tables (some 170 GB of 2.6 MB tables, far more as compactions merge them).
const (
	openFilesMin = 1000
	openFilesMax = 1 << 16
)

// OpenFilesShare returns the MaxOpenFiles for each of dbs databases of a process
// allowed limit open files: half of the limit shared among them (the other half is
// for connections, logs and the update log), at least Pebble's default of 1 000 and at
// most 65 536. A limit of 0 (unknown) gives the default.
func OpenFilesShare(limit uint64, dbs int) int {
	if limit == 0 || dbs < 1 {
		return openFilesMin
	}
	share := limit / 2 / uint64(dbs)
	return int(min(max(share, openFilesMin), openFilesMax))
}

// OpenFilesLimit returns the process's limit on open files (RLIMIT_NOFILE's soft
// limit, which the Go runtime raises to the hard one at start), or 0 where there is
// none to read.
func OpenFilesLimit() uint64 { return openFilesLimit() }
