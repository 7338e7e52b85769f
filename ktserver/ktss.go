package ktserver

// Start-up restore of Kyoto Tycoon's own -bgs snapshots: a -bgs directory
// holding KT's %08d.ktss files and no ktd snapshot (manifest.json) is
// restored the way KT restores it, file N into database N — on-memory
// databases always, file databases when their directory is missing or
// empty (ktd never rolls back an existing file database). Each file is read
// whole into a fresh Pebble directory first (internal/migrate): a malformed
// file is refused with its offset and the database starts empty, never
// half-loaded as KT leaves it. Every restored database gets the lowest
// timestamp of the files as its replication position, so a replica
// restored from a KT master's snapshots resumes from there.

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ktdproject/ktd/internal/migrate"
	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
)

// ktssState is the KT snapshot files found at start-up.
type ktssState struct {
	files map[int][]string // database index -> files, in name order
	ts    uint64           // lowest header timestamp of them all
	temp  map[string]bool  // directories built for on-memory databases
}

// findKTSS looks for KT's snapshot files in the -bgs directory (called
// when it holds no ktd snapshot).
func (s *Server) findKTSS() {
	dir := s.cfg.SnapshotDir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	st := &ktssState{files: map[int][]string{}, temp: map[string]bool{}}
	for _, e := range ents {
		i, ok := migrate.IsKTSSName(e.Name())
		if !ok || !e.Type().IsRegular() || i >= len(s.cfg.DBs) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		h, err := ktssHeader(path)
		if err != nil {
			s.logger.Error("could not apply a snapshot file", "db", i, "path", path, "err", err)
			continue
		}
		st.files[i] = append(st.files[i], path)
		if h.TS > 0 && (st.ts == 0 || h.TS < st.ts) {
			st.ts = h.TS
		}
	}
	if len(st.files) > 0 {
		s.snap.ktss = st
	}
}

func ktssHeader(path string) (snapfile.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapfile.Header{}, err
	}
	defer f.Close()
	r, err := snapfile.NewReader(f)
	if err != nil {
		return snapfile.Header{}, err
	}
	if r.Header().Format != snapfile.KTSS {
		return snapfile.Header{}, &snapfile.Error{Chunk: -1, Reason: "a KCSS dump, not a KT -bgs snapshot (load it with ktd import)"}
	}
	return r.Header(), nil
}

// restoreKTSSBeforeOpen restores database i from KT's snapshot files, if
// any: a file database is built in place before it opens (when missing or
// empty); for an on-memory one it returns the directory to load once open.
func (s *Server) restoreKTSSBeforeOpen(i int, spec store.Spec) string {
	st := s.snap.ktss
	if st == nil || len(st.files[i]) == 0 {
		return ""
	}
	files := st.files[i]
	if len(files) > 1 {
		// KT would apply them all, in directory order, one over the other.
		s.logger.Error("could not apply a snapshot file: several files name this database", "db", i, "files", files)
		return ""
	}
	if !spec.InMemory {
		if ents, err := os.ReadDir(spec.Path); err == nil && len(ents) > 0 || err != nil && !os.IsNotExist(err) {
			s.logger.Info("database exists; the snapshot file is not applied", "db", i, "path", spec.Path, "file", files[0])
			return ""
		}
	}
	values := migrate.ValuesKT
	if spec.Persistent {
		values = migrate.ValuesPlain // a ktopts=p database's file holds bare values
	}
	var tmp string
	if spec.InMemory {
		tmp = filepath.Join(s.cfg.SnapshotDir, ".ktss-restore-"+strconv.Itoa(i))
	} else {
		tmp = filepath.Join(filepath.Dir(filepath.Clean(spec.Path)), "."+filepath.Base(spec.Path)+".ktss-restore")
	}
	os.RemoveAll(tmp) // a leftover of a restore that died: built by us, never used
	start := time.Now()
	res, err := migrate.Build(tmp, spec, values, files, s.now())
	if err == nil && st.ts > 0 {
		_, err = store.FinishSnapshot(tmp, st.ts)
	}
	if err != nil {
		os.RemoveAll(tmp)
		s.logger.Error("could not apply a snapshot file; the database starts without it", "db", i, "file", files[0], "err", err)
		return ""
	}
	s.logger.Warn("applying a snapshot file", "db", i, "file", files[0], "records", res.Records,
		"expired", res.Expired, "ts", res.TS, "repl_ts", st.ts, "elapsed", time.Since(start))
	for _, n := range res.Notes {
		s.logger.Warn(n, "db", i)
	}
	if spec.InMemory {
		st.temp[tmp] = true
		return tmp
	}
	os.Remove(spec.Path) // an empty directory in the way
	if err := os.Rename(tmp, spec.Path); err != nil {
		os.RemoveAll(tmp)
		s.logger.Error("could not apply a snapshot file", "db", i, "err", err)
		return ""
	}
	if err := syncDir(filepath.Dir(filepath.Clean(spec.Path))); err != nil {
		s.logger.Error("sync directory", "err", err)
	}
	return ""
}

// loadKTSSAfterOpen loads a directory built by restoreKTSSBeforeOpen into
// an on-memory database, then removes it.
func (s *Server) loadKTSSAfterOpen(i int, db *store.DB, src string) {
	defer os.RemoveAll(src)
	if err := db.LoadSnapshot(src); err != nil {
		s.logger.Error("could not apply a snapshot file", "db", i, "err", err)
	}
}

// ktssTemp reports whether src is a directory built from KT's files.
func (s *Server) ktssTemp(src string) bool {
	return s.snap.ktss != nil && s.snap.ktss.temp[src]
}
