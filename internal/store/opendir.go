package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"
)

// A file database's directory is opened in one of three ways, decided before Pebble
// touches anything:
//
//   - absent, or empty (nothing but Pebble's LOCK): Pebble creates a new store there;
//   - a complete, consistent Pebble store: Pebble opens it (never re-creating it);
//   - anything else: Open refuses with a DamageError naming the file at fault, and
//     leaves every file as it was.
//
// Pebble alone would treat a directory whose manifest marker is missing as a new store
// and then delete, as obsolete, every sstable and WAL the new manifest does not list:
// the data. So the directory is inspected first, under Pebble's lock: the markers, the
// current MANIFEST, the latest OPTIONS file, and then the MANIFEST's content, through a
// read-only Pebble on a file system that refuses every write. Files Pebble would delete
// at open are accounted for: sstables the MANIFEST does not list are either unfinished
// writes (no sstable footer) or hold nothing the store does not hold already (the output
// of a flush or compaction cut short by a crash, or an input whose deletion was); any
// other is a sign of a truncated or stale MANIFEST, and Open refuses rather than let
// Pebble delete it.

// DamageError reports a database directory that is not a complete, consistent Pebble
// store. Nothing in the directory has been changed.
type DamageError struct {
	Path   string // the database directory
	Reason string // what is wrong, naming the file at fault
}

// Error renders one line: "store: open PATH: REASON; refusing to open (...)".
func (e *DamageError) Error() string {
	return fmt.Sprintf("store: open %s: %s; refusing to open (ktd recover can rebuild it into a new directory)", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

func damaged(path, format string, args ...any) error {
	return &DamageError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// dirKind is what checkDir found at a database path.
type dirKind int

const (
	dirNew   dirKind = iota // absent or empty: create a store
	dirStore                // holds files: must be a Pebble store
)

// checkDir looks at a database path before anything is opened: a regular file there (a
// Kyoto Cabinet file?) and a missing parent directory are errors (KT creates no parent
// directories), a directory holding nothing of Pebble's is refused.
func checkDir(fsys vfs.FS, path string) (dirKind, error) {
	fi, err := fsys.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(path)
		pfi, err := fsys.Stat(parent)
		if err != nil {
			return 0, fmt.Errorf("store: open %s: parent directory: %w", path, err)
		}
		if !pfi.IsDir() {
			return 0, fmt.Errorf("store: open %s: parent %s is not a directory", path, parent)
		}
		return dirNew, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("store: open %s: a regular file is in the way (a Kyoto Cabinet file?); ktd keeps a Pebble directory there", path)
	}
	names, err := fsys.List(path)
	if err != nil {
		return 0, fmt.Errorf("store: open %s: %w", path, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "LOCK" })
	if len(names) == 0 {
		return dirNew, nil
	}
	if !slices.ContainsFunc(names, isPebbleFile) {
		return 0, fmt.Errorf("store: open %s: the directory holds no Pebble store (a Kyoto Cabinet directory database?)", path)
	}
	return dirStore, nil
}

// isPebbleFile reports whether name is one of Pebble's files.
func isPebbleFile(name string) bool {
	return pebbleFileKind(name) != fileForeign
}

// fileKind classifies the names found in a store directory.
type fileKind int

const (
	fileForeign  fileKind = iota // not a name Pebble writes
	fileLock                     // LOCK
	fileMarker                   // marker.<name>.<iter>.<value>
	fileManifest                 // MANIFEST-<num>
	fileOptions                  // OPTIONS-<num>
	fileTable                    // <num>.sst
	fileBlob                     // <num>.blob
	fileWAL                      // <num>.log, <num>-<index>.log
	fileTemp                     // temporary.<num>.dbtmp, CURRENT.<num>.dbtmp
	fileCurrent                  // CURRENT: a Pebble v1 / RocksDB store
)

// pebbleFileKind returns the kind of a file name and, for numbered files, its number.
func pebbleFileKind(name string) fileKind {
	k, _ := parsePebbleName(name)
	return k
}

// parsePebbleName parses one of Pebble's file names (Pebble's base.ParseFilename and
// wal.ParseLogFilename, which are what Pebble itself recognises).
func parsePebbleName(name string) (fileKind, uint64) {
	num := func(s string) (uint64, bool) {
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	switch {
	case name == "LOCK":
		return fileLock, 0
	case name == "CURRENT":
		return fileCurrent, 0
	case strings.HasPrefix(name, "marker."):
		if _, _, _, ok := parseMarker(name); ok {
			return fileMarker, 0
		}
		return fileForeign, 0
	case strings.HasPrefix(name, "MANIFEST-"):
		if n, ok := num(name[len("MANIFEST-"):]); ok {
			return fileManifest, n
		}
	case strings.HasPrefix(name, "OPTIONS-"):
		if n, ok := num(name[len("OPTIONS-"):]); ok {
			return fileOptions, n
		}
	case strings.HasSuffix(name, ".dbtmp"):
		s := strings.TrimSuffix(name, ".dbtmp")
		for _, p := range []string{"temporary.", "CURRENT."} {
			if n, ok := num(strings.TrimPrefix(s, p)); strings.HasPrefix(s, p) && ok {
				return fileTemp, n
			}
		}
	case strings.HasSuffix(name, ".sst"):
		if n, ok := num(strings.TrimSuffix(name, ".sst")); ok {
			return fileTable, n
		}
	case strings.HasSuffix(name, ".blob"):
		if n, ok := num(strings.TrimSuffix(name, ".blob")); ok {
			return fileBlob, n
		}
	case strings.HasSuffix(name, ".log"):
		if n, _, ok := wal.ParseLogFilename(name); ok {
			return fileWAL, uint64(n)
		}
	}
	return fileForeign, 0
}

// parseMarker parses Pebble's marker file name "marker.<name>.<iter>.<value>".
func parseMarker(file string) (name string, iter uint64, value string, ok bool) {
	rest, ok := strings.CutPrefix(file, "marker.")
	if !ok {
		return "", 0, "", false
	}
	name, rest, ok = strings.Cut(rest, ".")
	if !ok || name == "" {
		return "", 0, "", false
	}
	it, value, ok := strings.Cut(rest, ".")
	if !ok {
		return "", 0, "", false
	}
	iter, err := strconv.ParseUint(it, 10, 64)
	if err != nil {
		return "", 0, "", false
	}
	return name, iter, value, true
}

// storeFiles is the listing of a store directory, classified.
type storeFiles struct {
	all            []string
	manifests      map[uint64]bool
	options        []uint64 // OPTIONS file numbers
	tables         []uint64 // sstable file numbers
	wals           []string
	formatMarker   string // current marker.format-version.* ("" = none)
	manifestMarker string // current marker.manifest.* ("" = none)
	lock           bool   // LOCK exists
}

// classify sorts a directory listing; it refuses names that only look like Pebble's.
func classify(path string, names []string) (*storeFiles, error) {
	sf := &storeFiles{all: names, manifests: map[uint64]bool{}}
	var fmtIter, manIter uint64
	for _, n := range names {
		kind, num := parsePebbleName(n)
		switch kind {
		case fileForeign:
			if strings.HasPrefix(n, "marker.") {
				// Pebble refuses to open a directory holding a malformed marker.
				return nil, damaged(path, "%s is not a valid marker file name", n)
			}
		case fileLock:
			sf.lock = true
		case fileCurrent:
			return nil, damaged(path, "CURRENT: a Pebble v1 or RocksDB store, which ktd does not open")
		case fileMarker:
			name, iter, _, _ := parseMarker(n)
			switch name {
			case "format-version":
				if sf.formatMarker == "" || iter > fmtIter {
					sf.formatMarker, fmtIter = n, iter
				}
			case "manifest":
				if sf.manifestMarker == "" || iter > manIter {
					sf.manifestMarker, manIter = n, iter
				}
			default:
				return nil, damaged(path, "%s is not a marker ktd's Pebble writes", n)
			}
		case fileManifest:
			sf.manifests[num] = true
		case fileOptions:
			sf.options = append(sf.options, num)
		case fileTable:
			sf.tables = append(sf.tables, num)
		case fileBlob:
			return nil, damaged(path, "%s: ktd writes no blob files; this is not ktd's store", n)
		case fileWAL:
			sf.wals = append(sf.wals, n)
		}
	}
	slices.Sort(sf.options)
	slices.Sort(sf.tables)
	return sf, nil
}

// checkBookkeeping checks the files that say what the store is: both markers, the
// MANIFEST the manifest marker names, and the latest OPTIONS file.
func checkBookkeeping(fsys vfs.FS, path string, sf *storeFiles) (manifest string, err error) {
	if sf.manifestMarker == "" {
		return "", damaged(path, "no marker.manifest.* file names the current MANIFEST (%s)", describeFiles(sf.all))
	}
	_, _, value, _ := parseMarker(sf.manifestMarker)
	kind, num := parsePebbleName(value)
	if kind != fileManifest {
		return "", damaged(path, "%s names %q, which is not a MANIFEST", sf.manifestMarker, value)
	}
	if !sf.manifests[num] {
		return "", damaged(path, "%s names a missing %s", sf.manifestMarker, value)
	}
	if fi, err := fsys.Stat(fsys.PathJoin(path, value)); err != nil {
		return "", damaged(path, "%s: %v", value, err)
	} else if fi.Size() == 0 {
		return "", damaged(path, "%s is empty", value)
	}
	if sf.formatMarker == "" {
		return "", damaged(path, "no marker.format-version.* file gives the store's format version")
	}
	_, _, v, _ := parseMarker(sf.formatMarker)
	fv, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return "", damaged(path, "%s: %q is not a format version", sf.formatMarker, v)
	}
	if fv < uint64(pebble.FormatMinSupported) || fv > uint64(pebble.FormatNewest) {
		return "", damaged(path, "%s: format version %d is outside what this Pebble reads (%d..%d)",
			sf.formatMarker, fv, pebble.FormatMinSupported, pebble.FormatNewest)
	}
	if len(sf.options) == 0 {
		return "", damaged(path, "no OPTIONS file")
	}
	opt := fmt.Sprintf("OPTIONS-%06d", sf.options[len(sf.options)-1])
	data, err := readFile(fsys, fsys.PathJoin(path, opt))
	if err != nil {
		return "", damaged(path, "%s: %v", opt, err)
	}
	if err := checkOptionsText(data); err != nil {
		return "", damaged(path, "%s: %v", opt, err)
	}
	return value, nil
}

// holdsNoData reports whether the directory holds no sstable and no WAL record, as
// after a store's creation was cut short.
func holdsNoData(fsys vfs.FS, path string, sf *storeFiles) bool {
	if len(sf.tables) > 0 {
		return false
	}
	logs, err := wal.Scan(wal.Dir{FS: fsys, Dirname: path})
	if err != nil {
		return false
	}
	for _, ll := range logs {
		r := ll.OpenForRead()
		_, off, err := r.NextRecord()
		r.Close()
		if errors.Is(err, io.EOF) || zeroTail(fsys, fsys.PathJoin(path, ll.Num.String()+".log"), err, off.Physical) {
			continue
		}
		return false // a record, or something unreadable: not nothing
	}
	return true
}

// zeroTail reports whether err, met reading a WAL at offset off, is the end of the
// log's records in a file that holds only zeros from there on: the tail ktd writes
// ahead of the log (internal/walsync), not a torn write or damage.
func zeroTail(fsys vfs.FS, name string, err error, off int64) bool {
	if !errors.Is(err, record.ErrUnexpectedEOF) {
		return false
	}
	f, err := fsys.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.ReadAt(buf, off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		off += int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// describeFiles summarises a listing for an error message.
func describeFiles(names []string) string {
	const show = 6
	s := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "LOCK" })
	slices.Sort(s)
	if len(s) > show {
		return fmt.Sprintf("the directory holds %s and %d more", strings.Join(s[:show], ", "), len(s)-show)
	}
	return "the directory holds " + strings.Join(s, ", ")
}

func readFile(fsys vfs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// numLevels is the number of LSM levels Pebble writes an OPTIONS section for.
const numLevels = 7

// checkOptionsText reports whether data is a whole OPTIONS file as Pebble writes it: an
// INI text ending in a newline, with a [Version] and an [Options] section and one
// [Level "N"] section per level, each level with the same keys as level 0. A file cut
// short (a truncated copy, a torn write) fails one of these, which Pebble's own parser
// does not notice: it reads whatever keys are there.
func checkOptionsText(data []byte) error {
	if len(data) == 0 {
		return errors.New("empty")
	}
	if data[len(data)-1] != '\n' {
		return errors.New("cut short (no final newline)")
	}
	sections := map[string][]string{}
	cur := ""
	for i, line := range bytes.Split(data[:len(data)-1], []byte("\n")) {
		l := strings.TrimSpace(string(line))
		switch {
		case l == "":
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			cur = l[1 : len(l)-1]
			if _, dup := sections[cur]; dup {
				return fmt.Errorf("line %d: section [%s] repeated", i+1, cur)
			}
			sections[cur] = []string{}
		case cur != "" && strings.Contains(l, "="):
			k, _, _ := strings.Cut(l, "=")
			sections[cur] = append(sections[cur], strings.TrimSpace(k))
		default:
			return fmt.Errorf("line %d is not an OPTIONS line", i+1)
		}
	}
	for _, s := range []string{"Version", "Options"} {
		if len(sections[s]) == 0 {
			return fmt.Errorf("no [%s] section: cut short?", s)
		}
	}
	level0 := sections[`Level "0"`]
	slices.Sort(level0)
	for l := range numLevels {
		name := fmt.Sprintf(`Level "%d"`, l)
		keys, ok := sections[name]
		if !ok || len(keys) == 0 {
			return fmt.Errorf("no [%s] section: cut short?", name)
		}
		keys = slices.Clone(keys)
		slices.Sort(keys)
		if !slices.Equal(keys, level0) {
			return fmt.Errorf("section [%s] has %d keys, level 0 has %d: cut short?", name, len(keys), len(level0))
		}
	}
	return nil
}

// lockDir takes Pebble's lock on an existing store directory for a read-write open. It
// reports whether it created the LOCK file, so that a refusal can remove it again.
func lockDir(fsys vfs.FS, path string) (*pebble.Lock, bool, error) {
	_, err := fsys.Stat(fsys.PathJoin(path, "LOCK"))
	created := errors.Is(err, fs.ErrNotExist)
	lock, err := pebble.LockDirectory(path, fsys)
	if err != nil {
		return nil, false, lockError(path, err)
	}
	return lock, created, nil
}

// lockError turns a failure to lock a store directory into one clear line.
func lockError(path string, err error) error {
	lockPath := filepath.Join(path, "LOCK")
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return fmt.Errorf("store: open %s: the database is locked by another process (%s is held); is another ktd using it?", path, lockPath)
	case strings.Contains(err.Error(), "lock held by current process"):
		return fmt.Errorf("store: open %s: the database is already open in this process (%s is held)", path, lockPath)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("store: open %s: cannot lock %s: permission denied (-ord opens a read-only directory)", path, lockPath)
	}
	return fmt.Errorf("store: open %s: lock %s: %w", path, lockPath, err)
}

// readOnlyFS is the file system of an inspection or of a read-only database: every
// write fails (so nothing can change, whatever Pebble tries), and Lock takes a shared
// lock through a read-only descriptor, so that a read-only directory can be opened and
// a read-write opener elsewhere is excluded. hideWALs hides the write-ahead logs from
// listings (an inspection that only needs the MANIFEST's view skips their replay).
type readOnlyFS struct {
	vfs.FS
	hideWALs bool
}

var errWriteDuringInspection = errors.New("store: write refused on a read-only file system")

func (r readOnlyFS) Create(string, vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, errWriteDuringInspection
}
func (r readOnlyFS) Link(string, string) error { return errWriteDuringInspection }
func (r readOnlyFS) OpenReadWrite(string, vfs.DiskWriteCategory, ...vfs.OpenOption) (vfs.File, error) {
	return nil, errWriteDuringInspection
}
func (r readOnlyFS) Remove(string) error                { return errWriteDuringInspection }
func (r readOnlyFS) RemoveAll(string) error             { return errWriteDuringInspection }
func (r readOnlyFS) Rename(string, string) error        { return errWriteDuringInspection }
func (r readOnlyFS) MkdirAll(string, os.FileMode) error { return errWriteDuringInspection }
func (r readOnlyFS) ReuseForWrite(string, string, vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, errWriteDuringInspection
}
func (r readOnlyFS) Unwrap() vfs.FS { return r.FS }

// List lists dir, without WAL files when hideWALs is set.
func (r readOnlyFS) List(dir string) ([]string, error) {
	names, err := r.FS.List(dir)
	if err != nil || !r.hideWALs {
		return names, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return pebbleFileKind(n) == fileWAL }), nil
}

// Lock takes a shared lock on an existing LOCK file (see sharedLock); on another file
// system it takes that file system's lock.
func (r readOnlyFS) Lock(name string) (io.Closer, error) {
	if r.FS != vfs.Default {
		return r.FS.Lock(name)
	}
	return sharedLock(name)
}

// openStoreDir opens the Pebble store of a file database at path with opts (whose FS is
// set), creating it only in an absent or empty directory, and refusing anything that is
// not a complete, consistent store (see the comment at the top of this file). readOnly
// opens an existing store without writing anything: Pebble's read-only mode, a shared
// lock, and a file system that refuses writes. The returned lock, when not nil, must be
// closed after the DB.
func openStoreDir(path string, opts *pebble.Options, readOnly bool, logger *slog.Logger) (*pebble.DB, *pebble.Lock, error) {
	fsys := opts.FS
	kind, err := checkDir(fsys, path)
	if err != nil {
		return nil, nil, err
	}
	if kind == dirNew {
		if readOnly {
			return nil, nil, fmt.Errorf("store: open %s: no database there, and -ord (read-only) creates none", path)
		}
		o := opts.Clone()
		o.ErrorIfExists = true // created meanwhile by someone else: not ours to create
		pdb, err := pebble.Open(path, o)
		if err != nil {
			return nil, nil, openError(path, err)
		}
		return pdb, nil, nil
	}

	var lock *pebble.Lock
	created := false
	if readOnly {
		if lock, err = pebble.LockDirectory(path, readOnlyFS{FS: fsys}); err != nil {
			return nil, nil, lockError(path, err)
		}
	} else if lock, created, err = lockDir(fsys, path); err != nil {
		return nil, nil, err
	}
	refuse := func(err error) (*pebble.DB, *pebble.Lock, error) {
		lock.Close()
		if created {
			fsys.Remove(fsys.PathJoin(path, "LOCK")) // ours: leave the directory as it was
		}
		return nil, nil, err
	}
	names, err := fsys.List(path) // again, now that nobody else can change it
	if err != nil {
		return refuse(fmt.Errorf("store: open %s: %w", path, err))
	}
	sf, err := classify(path, names)
	if err != nil {
		return refuse(err)
	}
	manifest, err := checkBookkeeping(fsys, path, sf)
	if err != nil {
		var de *DamageError
		if errors.As(err, &de) && holdsNoData(fsys, path, sf) {
			// Pebble writes a new store's files one by one; a crash in between leaves
			// this. Saying so spares the operator a recovery of nothing.
			de.Reason += " (the directory holds no data: no sstable, no WAL record; a creation cut short? delete it to start afresh)"
		}
		return refuse(err)
	}
	o := opts.Clone()
	o.Lock = lock
	o.ErrorIfNotExists = true
	if readOnly {
		// Pebble's read-only mode writes and deletes nothing, so what the MANIFEST does
		// not list needs no accounting; the read-only open checks the rest.
		o.ReadOnly = true
		o.FS = readOnlyFS{FS: fsys}
		o.DisableConsistencyCheck = true // checkTables names the files
		pdb, err := pebble.Open(path, o)
		if err != nil {
			return refuse(damaged(path, "%s", pebbleDamage(err, path, manifest)))
		}
		if _, err := checkTables(pdb, fsys, path, manifest); err != nil {
			pdb.Close()
			return refuse(err)
		}
		return pdb, lock, nil
	}
	if err := inspectStore(path, opts, lock, sf, manifest, logger); err != nil {
		return refuse(err)
	}
	pdb, err := pebble.Open(path, o)
	if err != nil {
		lock.Close()
		return nil, nil, openError(path, err)
	}
	return pdb, lock, nil
}

// openError condenses a failure of Pebble's Open into one line.
func openError(path string, err error) error {
	if isLockError(err) {
		return lockError(path, err)
	}
	return fmt.Errorf("store: open %s: %s", path, oneLine(err))
}

// isLockError reports whether err is a failure to take a directory's lock.
func isLockError(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "lock held by current process")
}
