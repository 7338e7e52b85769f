// Package migrate moves data between Kyoto Tycoon's and Kyoto Cabinet's
// snapshot files (package snapfile) and ktd's databases: `ktd import`,
// `ktd export` and the start-up restore of KT's -bgs files.
//
// An import never half-loads: every file is read into a fresh Pebble
// directory first, and only when all of them have been read to their end
// without a defect is that directory moved into place (a file database)
// or loaded into the database (an on-memory one). A malformed file is
// refused with its offset and the reason, and leaves nothing behind.
package migrate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
)

// Values says how a snapshot file stores values. Neither format records
// it, so the caller says it.
type Values uint8

const (
	// ValuesKT: KT's 5-byte big-endian absolute expiry, then the value:
	// what a KT server's databases hold (and so its -bgs files and KC dumps
	// of its files).
	ValuesKT Values = iota + 1
	// ValuesPlain: the value alone: plain KC databases and KT's ktopts=p
	// databases.
	ValuesPlain
)

func (v Values) String() string {
	switch v {
	case ValuesKT:
		return "kt"
	case ValuesPlain:
		return "plain"
	}
	return fmt.Sprintf("values(%d)", uint8(v))
}

// ParseValues parses "kt" or "plain".
func ParseValues(s string) (Values, error) {
	switch s {
	case "kt":
		return ValuesKT, nil
	case "plain":
		return ValuesPlain, nil
	}
	return 0, fmt.Errorf("migrate: unknown value layout %q (kt or plain)", s)
}

// xtLen is the size of KT's expiry prefix; xtMax (2^40-1) means none.
const (
	xtLen = 5
	xtMax = store.XTMax
)

// loadBatch is the number of records written to the store per batch.
const loadBatch = 10000

// Result reports what an import read.
type Result struct {
	Files   int
	Records int64 // records loaded
	Expired int64 // records dropped because their expiry had passed
	// TS is the lowest header timestamp of the KTSS files read (0 when
	// none had one): the update-log clock from which replaying the
	// master's log makes the data current.
	TS uint64
	// Notes are remarks worth showing (a header count that differs from
	// the records, as when KT dumped a file database under writes).
	Notes []string
}

// Build reads the snapshot files into a new Pebble directory dir (which
// must not exist), laid out for a database like spec (with or without
// KT's expiry prefix, as spec.Persistent says), and stores Result.TS as
// its replication position. Records whose expiry is before now are
// dropped; a key in several files, or twice, ends with its last record. On
// any error dir is removed and nothing else is changed.
func Build(dir string, spec store.Spec, values Values, files []string, now time.Time) (res Result, err error) {
	if _, err := os.Lstat(dir); err == nil {
		return res, fmt.Errorf("migrate: %s exists", dir)
	}
	db, err := store.Open(store.Config{Spec: store.Spec{Arg: dir, Path: dir, Name: filepath.Base(dir),
		Type: store.TypeTree, Persistent: spec.Persistent, CapCount: -1, CapSize: -1, KTCapCount: -1, KTCapSize: -1},
		NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err == nil && res.TS > 0 {
			_, err = store.FinishSnapshot(dir, res.TS)
		}
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	for _, name := range files {
		if err := loadFile(db, spec.Persistent, values, name, now.Unix(), &res); err != nil {
			return res, err
		}
	}
	// Make it durable before anyone moves it into place.
	return res, db.Synchronize(true)
}

// loadFile reads one snapshot file into db.
func loadFile(db *store.DB, persistent bool, values Values, name string, now int64, res *Result) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := snapfile.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := r.Header()
	if h.Format == snapfile.KTSS && h.TS > 0 && (res.TS == 0 || h.TS < res.TS) {
		res.TS = h.TS
	}
	batch := make([]store.Change, 0, loadBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := db.Apply(batch)
		batch = batch[:0]
		return err
	}
	var n int64
	for {
		at := r.Offset()
		key, value, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		n++
		stored, live, err := convert(value, values, persistent, now)
		if err != nil {
			return fmt.Errorf("%s: record %d (at or after offset %d): %w", name, n, at, err)
		}
		if !live {
			res.Expired++
			continue
		}
		batch = append(batch, store.Change{Op: store.OpSet, Key: clone(key), Value: stored})
		if len(batch) == loadBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		res.Records++
	}
	if err := flush(); err != nil {
		return err
	}
	res.Files++
	if h.Format == snapfile.KTSS && h.Count != uint64(n) {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: the header counts %d records, the file holds %d (KT counts when the dump begins; writes during a dump of a file database change it)",
			name, h.Count, n))
	}
	return nil
}

// convert turns a value of a snapshot file into ktd's stored form for a
// database with or without the expiry prefix, and tells whether the
// record is still live at now (epoch seconds).
func convert(value []byte, values Values, persistent bool, now int64) (stored []byte, live bool, err error) {
	xt := xtMax
	if values == ValuesKT {
		if len(value) < xtLen {
			return nil, false, fmt.Errorf("a value of %d bytes cannot hold KT's 5-byte expiry prefix (a plain KC file? import it with -values plain)", len(value))
		}
		xt = int64(value[0])<<32 | int64(value[1])<<24 | int64(value[2])<<16 | int64(value[3])<<8 | int64(value[4])
		if now > xt {
			return nil, false, nil
		}
		if persistent {
			return clone(value[xtLen:]), true, nil
		}
		return clone(value), true, nil
	}
	if persistent {
		return clone(value), true, nil
	}
	out := make([]byte, xtLen+len(value))
	out[0] = byte(xt >> 32)
	out[1], out[2], out[3], out[4] = byte(xt>>24), byte(xt>>16), byte(xt>>8), byte(xt)
	copy(out[xtLen:], value)
	return out, true, nil
}

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// ErrNotEmpty refuses to import into a database that holds data.
var ErrNotEmpty = errors.New("migrate: the database exists and holds data; ktd import loads only into an absent or empty database")

// Import is `ktd import`: it reads files into the file database the
// argument arg names (as on the server's command line, e.g.
// "data/casket.kct"), which must be absent, an empty directory, or a ktd
// database holding no record and no update log. The data is built in a
// temporary directory beside it and moved into place only once every file
// has been read without a defect; the server must not be running on it.
func Import(arg string, values Values, files []string, now time.Time) (Result, error) {
	spec, err := store.ParseSpec(arg)
	if err != nil {
		return Result{}, err
	}
	if spec.InMemory {
		return Result{}, fmt.Errorf("migrate: %s is an on-memory database, which lives only in a running server; import into a file database (or let ktd -bgs restore KT's files at start-up)", arg)
	}
	if len(files) == 0 {
		return Result{}, errors.New("migrate: name the snapshot files to import")
	}
	old, err := checkTarget(spec)
	if err != nil {
		return Result{}, err
	}
	tmp := tempPath(spec.Path, "import")
	res, err := Build(tmp, spec, values, files, now)
	if err != nil {
		return res, err
	}
	if err := swapIn(tmp, spec.Path, old); err != nil {
		os.RemoveAll(tmp)
		return res, err
	}
	return res, nil
}

// tempPath is a hidden sibling of path for building a database.
func tempPath(path, what string) string {
	path = filepath.Clean(path)
	return filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%s-%d", filepath.Base(path), what, os.Getpid()))
}

// checkTarget refuses a database that holds data, and reports whether an
// (empty) one is in the way: "" when path is absent.
func checkTarget(spec store.Spec) (old string, err error) {
	st, err := os.Stat(spec.Path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(spec.Path)); err != nil {
			return "", fmt.Errorf("migrate: parent directory of %s: %w", spec.Path, err)
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("migrate: %s: a regular file is in the way (a Kyoto Cabinet file? dump it with kcpolymgr dump and import the dump)", spec.Path)
	}
	ents, err := os.ReadDir(spec.Path)
	if err != nil {
		return "", err
	}
	if len(ents) == 0 {
		return spec.Path, nil
	}
	db, err := store.Open(store.Config{Spec: spec, ReadOnly: true})
	if err != nil {
		return "", fmt.Errorf("migrate: %s: %w", spec.Path, err)
	}
	defer db.Close()
	first, _, err := db.ULogBounds()
	if err != nil {
		return "", err
	}
	if db.Count() > 0 || first > 0 {
		return "", fmt.Errorf("%w (%s: %d records)", ErrNotEmpty, spec.Path, db.Count())
	}
	return spec.Path, nil
}

// swapIn moves the built directory tmp to path. An empty database old in
// the way (checked by checkTarget) is moved aside first and removed once
// the new one is in place.
func swapIn(tmp, path, old string) error {
	aside := ""
	if old != "" {
		aside = tempPath(path, "replaced")
		if err := os.Rename(old, aside); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		if aside != "" {
			os.Rename(aside, old)
		}
		return err
	}
	if err := syncDir(filepath.Dir(filepath.Clean(path))); err != nil {
		return err
	}
	if aside != "" {
		return os.RemoveAll(aside)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsKTSSName reports whether name is a file KT's -bgs start-up restores and
// returns its database index: a name starting with a digit whose extension
// is "ktss" (any case), the index being the number it starts with
// (ktserver.cc: atoi of the name). "00000001.ktss" and "1.KTSS" are index 1.
func IsKTSSName(name string) (int, bool) {
	dot := strings.LastIndexByte(name, '.')
	if name == "" || name[0] < '0' || name[0] > '9' || dot < 0 || !strings.EqualFold(name[dot+1:], "ktss") {
		return 0, false
	}
	n := 0
	for _, c := range name {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 0, false
		}
	}
	return n, true
}
