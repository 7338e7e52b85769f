package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ktdproject/ktd/internal/migrate"
	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
)

// importUsage documents `ktd import`.
const importUsage = `usage: ktd import [-values kt|plain] db file...
  Loads Kyoto Tycoon -bgs snapshots (.ktss, any -bgsc compression) and
  Kyoto Cabinet dumps (.kcss, from kcpolymgr dump or kttimedmgr dump) into
  the file database db, given as on the server's command line (e.g.
  data/casket.kct, or data/p.kct#ktopts=p). db must be absent or empty; the
  server must be stopped. Every file is read into a new database beside
  db, which replaces it only once all of them have been read without a
  defect: a malformed file is refused with its offset and nothing is
  loaded. Expired records are dropped; keys, values and expiry times are
  kept byte for byte. A KTSS file's timestamp becomes the database's
  replication position, so a replica started on it resumes from there.
  -values kt: values carry KT's 5-byte expiry prefix (a KT server's files,
              and kcpolymgr dumps of them; the default)
  -values plain: they do not (plain KC databases, KT's ktopts=p databases)
`

// exportUsage documents `ktd export`.
const exportUsage = `usage: ktd export [-format ktss|kcss] [-compress none|zlib|lzo|lzma] [-values kt|plain]
                  [-ts num] db file
       ktd export -bgs dir [-compress ...] [-values ...] [-ts num] db...
  Writes the live records of a file database (the server must be stopped)
  as a KT -bgs snapshot (ktss, the default; KT restores %08d.ktss files of
  its -bgs directory at start-up, with the same -bgsc compression) or a KC
  dump (kcss, for kcpolymgr load / kttimedmgr load). -bgs writes every
  database given, in server order, as dir/%08d.ktss. The KTSS timestamp is
  the newest update-log record, else the replication position, else now
  (-ts sets it). Values carry KT's expiry prefix unless the database is
  ktopts=p or -values plain is given (which drops expiry times).
`

// importMain runs `ktd import ...` and returns the exit status.
func importMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ktd import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage) }
	values := fs.String("values", "kt", "value layout: kt or plain")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	v, err := migrate.ParseValues(*values)
	if err != nil || fs.NArg() < 2 {
		if err != nil {
			fmt.Fprintf(stderr, "ktd import: %v\n", err)
		}
		fmt.Fprint(stderr, importUsage)
		return 1
	}
	db, files := fs.Arg(0), fs.Args()[1:]
	start := time.Now()
	res, err := migrate.Import(db, v, files, start)
	if err != nil {
		fmt.Fprintf(stderr, "ktd import: %v\n", err)
		return 1
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "ktd import: note: %s\n", n)
	}
	fmt.Fprintf(stdout, "imported %d records from %d file(s) into %s in %.2fs (%d expired, dropped)\n",
		res.Records, res.Files, db, time.Since(start).Seconds(), res.Expired)
	if res.TS > 0 {
		fmt.Fprintf(stdout, "replication position %d (the snapshot's timestamp): a replica started on it resumes there\n", res.TS)
	}
	return 0
}

// exportMain runs `ktd export ...` and returns the exit status.
func exportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ktd export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, exportUsage) }
	format := fs.String("format", "ktss", "ktss or kcss")
	comp := fs.String("compress", "none", "KTSS chunk compression: none, zlib, lzo or lzma")
	values := fs.String("values", "", "value layout: kt or plain (default: the database's)")
	bgs := fs.String("bgs", "", "write every database as dir/%08d.ktss")
	ts := fs.Uint64("ts", 0, "KTSS timestamp (default: from the database)")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	cfg := migrate.ExportConfig{TS: *ts, Now: time.Now()}
	var err error
	if cfg.Format, err = snapfile.ParseFormat(*format); err == nil {
		cfg.Compression, err = snapfile.ParseCompression(*comp)
	}
	if err == nil && *values != "" {
		cfg.Values, err = migrate.ParseValues(*values)
	}
	if err == nil && cfg.Format == snapfile.KCSS && cfg.Compression != snapfile.None {
		err = errors.New("a kcss file cannot be compressed")
	}
	if err == nil && *bgs != "" && cfg.Format != snapfile.KTSS {
		err = errors.New("-bgs writes ktss files")
	}
	if err != nil {
		fmt.Fprintf(stderr, "ktd export: %v\n", err)
		return 1
	}
	var dbArgs, paths []string
	switch {
	case *bgs != "" && fs.NArg() >= 1:
		if err := os.MkdirAll(*bgs, 0o755); err != nil {
			fmt.Fprintf(stderr, "ktd export: %v\n", err)
			return 1
		}
		dbArgs = fs.Args()
		for i := range dbArgs {
			paths = append(paths, filepath.Join(*bgs, migrate.KTSSName(i)))
		}
	case *bgs == "" && fs.NArg() == 2:
		dbArgs, paths = fs.Args()[:1], fs.Args()[1:]
	default:
		fmt.Fprint(stderr, exportUsage)
		return 1
	}
	for i, arg := range dbArgs {
		if err := exportOne(arg, paths[i], cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "ktd export: %s: %v\n", arg, err)
			return 1
		}
	}
	return 0
}

func exportOne(arg, path string, cfg migrate.ExportConfig, stdout io.Writer) error {
	spec, err := store.ParseSpec(arg)
	if err != nil {
		return err
	}
	if spec.InMemory {
		return errors.New("an on-memory database has nothing on disk to export")
	}
	if _, err := os.Stat(spec.Path); err != nil {
		return err
	}
	db, err := store.Open(store.Config{Spec: spec, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := migrate.Export(db, path, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %d records of %s to %s (%d expired, left out)", res.Records, arg, path, res.Expired)
	if cfg.Format == snapfile.KTSS {
		fmt.Fprintf(stdout, "; timestamp %d", res.TS)
	}
	fmt.Fprintln(stdout)
	if res.LostXT > 0 {
		fmt.Fprintf(stdout, "note: %d records had an expiry time, which plain values cannot carry\n", res.LostXT)
	}
	return nil
}
