package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/replication"
)

// ulogUsage documents `ktd ulog`.
const ulogUsage = `usage: ktd ulog dump [-from ts] db...
       ktd ulog export -dir path [-ulim num] [-from ts] db...
  Reads the update log that ktd keeps inside each database (give the
  databases as the server takes them, in the same order; the server must
  be stopped). dump prints one record a line; export writes it as Kyoto
  Tycoon ulog files (0000000001.ulog, ...) that KT's tools and slaves read.
`

// ulogMain runs `ktd ulog ...` and returns the exit status.
func ulogMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, ulogUsage)
		return 1
	}
	fs := flag.NewFlagSet("ktd ulog "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.Uint64("from", 0, "start after this timestamp")
	dir := fs.String("dir", "", "export: directory for the ulog files")
	ulim := fs.String("ulim", "256m", "export: size limit of one ulog file (KT's atoix syntax)")
	if err := fs.Parse(args[1:]); err != nil {
		return 1
	}
	dbs, err := openReadOnly(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "ktd ulog: %v\n", err)
		return 1
	}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	switch args[0] {
	case "dump":
		err = dumpULog(stdout, dbs, *from)
	case "export":
		if *dir == "" {
			err = errors.New("export needs -dir")
			break
		}
		var n int
		n, err = exportULog(*dir, ktproto.Atoix(*ulim), dbs, *from)
		if err == nil {
			fmt.Fprintf(stdout, "wrote %d ulog file(s) to %s\n", n, *dir)
		}
	default:
		fmt.Fprint(stderr, ulogUsage)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "ktd ulog: %v\n", err)
		return 1
	}
	return 0
}

func openReadOnly(args []string) ([]*store.DB, error) {
	if len(args) == 0 {
		return nil, errors.New("name the databases")
	}
	var dbs []*store.DB
	for _, a := range args {
		spec, err := store.ParseSpec(a)
		if err == nil && spec.InMemory {
			err = errors.New("an on-memory database has no update log on disk")
		}
		var db *store.DB
		if err == nil {
			db, err = store.Open(store.Config{Spec: spec, ReadOnly: true})
		}
		if err != nil {
			for _, d := range dbs {
				d.Close()
			}
			return nil, fmt.Errorf("%s: %w", a, err)
		}
		dbs = append(dbs, db)
	}
	return dbs, nil
}

func dumpULog(w io.Writer, dbs []*store.DB, from uint64) error {
	return replication.ReadMerged(dbs, from, ^uint64(0), func(ts uint64, msg []byte) error {
		m, err := replication.DecodeMessage(msg)
		if err != nil {
			return fmt.Errorf("record %d: %w", ts, err)
		}
		op := map[byte]string{replication.OpSet: "SET", replication.OpRemove: "REMOVE", replication.OpClear: "CLEAR"}[m.Op]
		if m.Op == replication.OpTxBegin {
			_, err = fmt.Fprintf(w, "%020d\tsid=%d\tdb=%d\tTXBEGIN\t%d\n", ts, m.SID, m.DBID, m.Count)
			return err
		}
		if op == "" {
			op = fmt.Sprintf("OP%#x", m.Op)
		}
		_, err = fmt.Fprintf(w, "%020d\tsid=%d\tdb=%d\t%s\t%q\t%q\n", ts, m.SID, m.DBID, op, m.Key, m.Value)
		return err
	})
}

// exportULog writes KT ulog files, starting a new one when the current
// one reaches limit bytes, as KT rotates. It returns the number of files.
func exportULog(dir string, limit int64, dbs []*store.DB, from uint64) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	var (
		f  *os.File
		w  *replication.ULogFileWriter
		id int
	)
	finish := func() error {
		if w == nil {
			return nil
		}
		if err := w.Close(); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}
	err := replication.ReadMerged(dbs, from, ^uint64(0), func(ts uint64, msg []byte) error {
		if replication.IsTxMarker(msg) {
			return nil // ktd's own: KT-format files carry KT's messages only
		}
		if w == nil || (limit > 0 && w.Size() >= limit) {
			if err := finish(); err != nil {
				return err
			}
			id++
			var err error
			if f, err = os.Create(filepath.Join(dir, replication.ULogFileName(id))); err != nil {
				return err
			}
			if w, err = replication.NewULogFileWriter(f); err != nil {
				return err
			}
		}
		return w.Write(ts, msg)
	})
	if err != nil {
		return id, err
	}
	return id, finish()
}
