package ktserver

// Snapshots and backups (KT's -bgs, -bgsi; ktd's snapshot procedure).
//
// A snapshot directory holds manifest.json and one subdirectory snap-<time> with a Pebble
// directory per database, named by index ("0", "1", ...). A snapshot is built in a
// temporary directory next to them, renamed into place, and committed by replacing
// manifest.json atomically; older snap-* directories are then removed. A crash at any
// point leaves the previous snapshot intact.
//
// Each database's copy is consistent by itself (a Pebble checkpoint, or for on-memory
// databases a Pebble snapshot of every key). Databases are copied one after the other
// while writes go on, so the manifest also records two positions that hold across all of
// them:
//
//   - repl_ts: the replication position written into every copy. It is the position the
//     server had stored before the first copy began; replicated changes are applied in
//     stream order, so every copy holds everything up to it. A server started from the
//     snapshot resumes there; changes a copy already holds are applied again, which is
//     harmless (KT's updates carry full values and absolute expiry times).
//   - ulog_horizon: every update-log record up to it was committed before the first copy
//     began, so it is in every copy. A new replica seeded from a copy of this master
//     starts from there (KT: "write the backup's ts into the rts file").

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ktdproject/ktd/internal/store"
)

const (
	// snapshotManifest is the manifest's file name, in the snapshot directory and in
	// each snap-* directory.
	snapshotManifest = "manifest.json"
	// snapshotFormat identifies the manifest format.
	snapshotFormat = "ktd-snapshot-1"
	// defaultSnapshotInterval is KT's -bgsi default.
	defaultSnapshotInterval = 180 * time.Second

	snapshotPrefix    = "snap-"
	snapshotTmpPrefix = ".tmp-snap-"
)

// SnapshotManifest describes a snapshot (manifest.json).
type SnapshotManifest struct {
	Format string    `json:"format"`
	Time   time.Time `json:"time"`
	// Dir is the snap-* directory holding the databases, relative to the
	// snapshot directory.
	Dir string `json:"dir"`
	SID uint16 `json:"sid"`
	// ReplTS is the replication position stored in every database copy.
	ReplTS uint64 `json:"repl_ts"`
	// ULogHorizon: every update-log record up to it is in every copy
	// (0 without an update log).
	ULogHorizon uint64           `json:"ulog_horizon"`
	DBs         []SnapshotDBInfo `json:"dbs"`
}

// SnapshotDBInfo describes one database of a snapshot.
type SnapshotDBInfo struct {
	Index      int    `json:"index"`
	Arg        string `json:"arg"` // the database argument it was taken from
	Dir        string `json:"dir"` // its Pebble directory, relative to the snap-* directory
	InMemory   bool   `json:"in_memory"`
	Persistent bool   `json:"persistent"` // ktopts=p: values carry no expiry prefix
	ULogFirst  uint64 `json:"ulog_first"` // lowest update-log timestamp contained
	ULogLast   uint64 `json:"ulog_last"`  // highest update-log timestamp contained
	ReplTS     uint64 `json:"repl_ts"`    // replication position contained
}

// snapState is the server's snapshot state.
type snapState struct {
	mu sync.Mutex // serialises snapshots

	// restore is the snapshot found in SnapshotDir at start-up, and base the
	// snap-* directory it names; nil when there is none.
	restore *SnapshotManifest
	base    string

	// ktss is KT's own snapshot files found instead (ktss.go); nil if none.
	ktss *ktssState
}

// errSnapshotRoot refuses a snapshot directory outside the allowed root.
var errSnapshotRoot = &rpcError{codeInvalid, "the snapshot directory is outside the allowed snapshot root"}

// procSnapshot is ktd's snapshot procedure: take a snapshot of every database into
// dir (relative to the snapshot root, or absolute inside it; absent: the root itself).
func procSnapshot(r *call) error {
	s := r.s
	target, err := s.snapshotTarget(r.in["dir"])
	if err != nil {
		return err
	}
	s.stats.misc.Add(1)
	man, path, err := s.Snapshot(target)
	if err != nil {
		s.logger.Error("snapshot failed", "dir", target, "err", err)
		return internal(err)
	}
	r.set("path", path)
	r.set("manifest", filepath.Join(target, snapshotManifest))
	r.set("time", man.Time.Format(time.RFC3339Nano))
	r.set("repl_ts", strconv.FormatUint(man.ReplTS, 10))
	r.set("ulog_horizon", strconv.FormatUint(man.ULogHorizon, 10))
	for _, d := range man.DBs {
		r.set("db_"+strconv.Itoa(d.Index), fmt.Sprintf("path=%s ulog_first=%d ulog_last=%d repl_ts=%d",
			filepath.Join(path, d.Dir), d.ULogFirst, d.ULogLast, d.ReplTS))
	}
	return nil
}

// snapshotTarget resolves the dir parameter of the snapshot procedure against the
// allowed root (Config.SnapshotRoot, else Config.SnapshotDir) and refuses anything that
// leaves it, through ".." or through a symbolic link.
func (s *Server) snapshotTarget(dir string) (string, error) {
	root := s.cfg.SnapshotRoot
	if root == "" {
		root = s.cfg.SnapshotDir
	}
	if root == "" {
		return "", &rpcError{codeNoImpl, "not implemented: snapshot (no snapshot directory is configured)"}
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", internal(err)
	}
	target := root
	if dir != "" {
		if filepath.IsAbs(dir) {
			target = filepath.Clean(dir)
		} else {
			target = filepath.Join(root, dir)
		}
	}
	if !within(root, target) {
		return "", errSnapshotRoot
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", internal(err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", internal(err)
	}
	// Resolve the longest existing part of target; what follows does not exist yet.
	existing, rest := target, ""
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return "", errSnapshotRoot
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = parent
	}
	realExisting, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", internal(err)
	}
	if !within(realRoot, filepath.Join(realExisting, rest)) {
		return "", errSnapshotRoot
	}
	return target, nil
}

// within reports whether path is root or lies below it (both clean and absolute).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return false
	}
	return rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Snapshot takes a snapshot of every database into dir (created if needed) without
// stopping writes, replacing the snapshot dir held before. It returns the manifest and
// the absolute path of the snap-* directory holding the databases.
func (s *Server) Snapshot(dir string) (*SnapshotManifest, string, error) {
	s.snap.mu.Lock()
	defer s.snap.mu.Unlock()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	removeStale(dir, "", true)

	// Positions that hold for every copy: taken before the first copy begins.
	var pos uint64
	for _, db := range s.dbs {
		p, err := db.ReplPosition()
		if err != nil {
			return nil, "", err
		}
		pos = max(pos, p)
	}
	man := &SnapshotManifest{Format: snapshotFormat, Time: s.now().UTC(), SID: s.cfg.SID, ReplTS: pos}
	if s.repl.log != nil {
		man.ULogHorizon = s.repl.log.Horizon()
	}

	tmp, err := os.MkdirTemp(dir, snapshotTmpPrefix)
	if err != nil {
		return nil, "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	for i, db := range s.dbs {
		spec := db.Spec()
		sub := strconv.Itoa(i)
		if err := db.Snapshot(filepath.Join(tmp, sub)); err != nil {
			return nil, "", fmt.Errorf("snapshot database %d (%s): %w", i, spec.Arg, err)
		}
		info, err := store.FinishSnapshot(filepath.Join(tmp, sub), pos)
		if err != nil {
			return nil, "", fmt.Errorf("snapshot database %d (%s): %w", i, spec.Arg, err)
		}
		man.DBs = append(man.DBs, SnapshotDBInfo{
			Index: i, Arg: spec.Arg, Dir: sub, InMemory: spec.InMemory, Persistent: spec.Persistent,
			ULogFirst: info.ULogFirst, ULogLast: info.ULogLast, ReplTS: info.ReplPos,
		})
	}
	name := snapshotPrefix + man.Time.Format("20060102T150405.000000000Z")
	for n := 1; ; n++ {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s%s-%d", snapshotPrefix, man.Time.Format("20060102T150405.000000000Z"), n)
	}
	man.Dir = name
	data, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return nil, "", err
	}
	data = append(data, '\n')
	// A copy inside the snap-* directory keeps it self-describing when moved.
	if err := writeFileAtomic(tmp, snapshotManifest, data); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return nil, "", err
	}
	ok = true
	if err := writeFileAtomic(dir, snapshotManifest, data); err != nil {
		os.RemoveAll(filepath.Join(dir, name))
		return nil, "", err
	}
	removeStale(dir, name, false)
	path := filepath.Join(dir, name)
	s.logger.Info("snapshot written", "path", path, "repl_ts", man.ReplTS, "ulog_horizon", man.ULogHorizon)
	return man, path, nil
}

// removeStale removes the snap-* directories of dir other than keep, and leftover
// temporary directories; with tmpOnly only the latter.
func removeStale(dir, keep string, tmpOnly bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		stale := strings.HasPrefix(n, snapshotTmpPrefix) ||
			!tmpOnly && strings.HasPrefix(n, snapshotPrefix) && n != keep
		if stale && e.IsDir() {
			os.RemoveAll(filepath.Join(dir, n))
		}
	}
}

// writeFileAtomic replaces dir/name with data: a synced temporary file renamed over it,
// then the directory synced.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadSnapshotManifest reads dir/manifest.json. It returns nil and no error when dir
// holds no snapshot.
func ReadSnapshotManifest(dir string) (*SnapshotManifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, snapshotManifest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m SnapshotManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, snapshotManifest), err)
	}
	if m.Format != snapshotFormat {
		return nil, fmt.Errorf("%s: unknown snapshot format %q", filepath.Join(dir, snapshotManifest), m.Format)
	}
	return &m, nil
}

// snapshotLoop is KT's -bgs/-bgsi: snapshot every database into SnapshotDir every
// SnapshotInterval. Close takes a last one.
func (s *Server) snapshotLoop() {
	every := s.cfg.SnapshotInterval
	if every == 0 {
		every = defaultSnapshotInterval
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := s.Snapshot(s.cfg.SnapshotDir); err != nil {
			s.logger.Error("background snapshot failed", "dir", s.cfg.SnapshotDir, "err", err)
		}
	}
}

// snapshotAtClose takes KT's snapshot at shutdown, once no request runs any more.
func (s *Server) snapshotAtClose() {
	if s.cfg.SnapshotDir == "" || len(s.dbs) == 0 {
		return
	}
	if _, _, err := s.Snapshot(s.cfg.SnapshotDir); err != nil {
		s.logger.Error("snapshot at shutdown failed", "dir", s.cfg.SnapshotDir, "err", err)
	}
}

// loadRestoreManifest reads the snapshot to restore from at start-up (SnapshotDir), if
// any. A broken manifest is logged, as KT logs a snapshot it cannot apply.
func (s *Server) loadRestoreManifest() {
	if s.cfg.SnapshotDir == "" {
		return
	}
	m, err := ReadSnapshotManifest(s.cfg.SnapshotDir)
	if err != nil {
		s.logger.Error("could not read the snapshot; nothing restored", "err", err)
		return
	}
	if m == nil {
		s.findKTSS()
		return
	}
	s.snap.restore = m
	s.snap.base = filepath.Join(s.cfg.SnapshotDir, m.Dir)
}

// restoreSource returns the snapshot directory of database i, "" when the start-up
// snapshot has none that fits spec.
func (s *Server) restoreSource(i int, spec store.Spec) string {
	m := s.snap.restore
	if m == nil || i >= len(m.DBs) || m.DBs[i].Index != i {
		return ""
	}
	d := m.DBs[i]
	if d.Persistent != spec.Persistent {
		s.logger.Error("could not apply a snapshot: ktopts=p differs between the snapshot and the database",
			"db", i, "snapshot_arg", d.Arg, "arg", spec.Arg)
		return ""
	}
	src := filepath.Join(s.snap.base, d.Dir)
	if !store.IsSnapshotDir(src) {
		s.logger.Error("could not apply a snapshot: no Pebble directory", "db", i, "path", src)
		return ""
	}
	return src
}

// restoreBeforeOpen restores a file database from the start-up snapshot when its
// directory is missing or empty: the snapshot's copy is copied into place (through a
// temporary directory renamed at the end) before the database opens. An existing
// database is never overwritten. It returns the snapshot directory to load into an
// on-memory database once open ("" for none).
func (s *Server) restoreBeforeOpen(i int, spec store.Spec) string {
	if s.snap.restore == nil {
		return s.restoreKTSSBeforeOpen(i, spec)
	}
	src := s.restoreSource(i, spec)
	if src == "" {
		return ""
	}
	if spec.InMemory {
		return src
	}
	if ents, err := os.ReadDir(spec.Path); err == nil && len(ents) > 0 || err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.logger.Info("database exists; the snapshot is not applied", "db", i, "path", spec.Path)
		return ""
	}
	s.logger.Warn("applying a snapshot file", "db", i, "from", src, "to", spec.Path, "repl_ts", s.snap.restore.ReplTS)
	if err := copySnapshotDir(src, spec.Path); err != nil {
		s.logger.Error("could not apply a snapshot", "db", i, "err", err)
	}
	return ""
}

// restoreAfterOpen loads the start-up snapshot into an on-memory database.
func (s *Server) restoreAfterOpen(i int, db *store.DB, src string) {
	if src == "" {
		return
	}
	if s.ktssTemp(src) {
		s.loadKTSSAfterOpen(i, db, src)
		return
	}
	s.logger.Warn("applying a snapshot file", "db", i, "from", src, "repl_ts", s.snap.restore.ReplTS)
	if err := db.LoadSnapshot(src); err != nil {
		s.logger.Error("could not apply a snapshot", "db", i, "err", err)
	}
}

// copySnapshotDir copies the Pebble directory src to dst (missing or empty), hard-linking
// sstables (immutable) where it can and copying the other files.
func copySnapshotDir(src, dst string) (err error) {
	parent := filepath.Dir(filepath.Clean(dst))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".restore*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, e.Name()), filepath.Join(tmp, e.Name())
		if strings.HasSuffix(e.Name(), ".sst") || strings.HasSuffix(e.Name(), ".blob") {
			if os.Link(from, to) == nil {
				continue
			}
		}
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	os.Remove(dst) // an empty directory in the way
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(parent)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
