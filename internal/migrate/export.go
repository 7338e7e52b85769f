package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
)

// ExportConfig describes an export.
type ExportConfig struct {
	Format      snapfile.Format
	Compression snapfile.Compression // KTSS only
	// Values is the layout written; 0 means the database's own: kt, or
	// plain for a ktopts=p database (what KT itself writes for each).
	Values Values
	// TS is the KTSS header's timestamp; 0 means SnapshotTS's.
	TS  uint64
	Now time.Time // expiry reference: records expired at Now are left out
}

// ExportResult reports what an export wrote.
type ExportResult struct {
	Records int64
	Expired int64  // expired records left out
	LostXT  int64  // records whose expiry a plain export could not carry
	TS      uint64 // the header's timestamp (KTSS)
}

// SnapshotTS is the update-log clock a snapshot of db stands for: the
// newest record of its update log (everything logged up to it is in the
// data), else its replication position (a replica holds its master's
// updates up to it), else the pure clock of now (ms × 10^6), which KT
// writes too.
func SnapshotTS(db *store.DB, now time.Time) (uint64, error) {
	_, last, err := db.ULogBounds()
	if err != nil {
		return 0, err
	}
	if last > 0 {
		return last, nil
	}
	pos, err := db.ReplPosition()
	if err != nil {
		return 0, err
	}
	if pos > 0 {
		return pos, nil
	}
	return uint64(max(0, now.UnixMilli())) * 1_000_000, nil
}

// Export writes the live records of db to path as a snapshot file,
// through a temporary file renamed into place once complete and synced.
// db should not change meanwhile (a database opened read-only with its
// server stopped): the records are counted first, for the header, then
// written.
func Export(db *store.DB, path string, cfg ExportConfig) (res ExportResult, err error) {
	persistent := db.Spec().Persistent
	if cfg.Values == 0 {
		cfg.Values = ValuesKT
		if persistent {
			cfg.Values = ValuesPlain
		}
	}
	if cfg.Now.IsZero() {
		cfg.Now = time.Now()
	}
	if cfg.TS == 0 && cfg.Format == snapfile.KTSS {
		if cfg.TS, err = SnapshotTS(db, cfg.Now); err != nil {
			return res, err
		}
	}
	now := cfg.Now.Unix()
	// First pass: the header's count and size (KT: db.count(), db.size()).
	var count, size uint64
	err = db.ScanStored(func(key, stored []byte) error {
		v, live, _ := exportValue(stored, persistent, cfg.Values, now)
		if live {
			count++
			size += uint64(len(key) + len(v))
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := snapfile.NewWriter(bw, snapfile.WriterConfig{Format: cfg.Format, Compression: cfg.Compression,
		TS: cfg.TS, Count: count, Size: size})
	if err != nil {
		return res, err
	}
	res.TS = cfg.TS
	err = db.ScanStored(func(key, stored []byte) error {
		v, live, lost := exportValue(stored, persistent, cfg.Values, now)
		if !live {
			res.Expired++
			return nil
		}
		if lost {
			res.LostXT++
		}
		res.Records++
		return w.Add(key, v)
	})
	if err != nil {
		return res, err
	}
	if uint64(res.Records) != count {
		return res, errors.New("migrate: the database changed during the export; stop its server and export again")
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	if err := bw.Flush(); err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, err
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, err
	}
	return res, syncDir(filepath.Dir(path))
}

// exportValue turns a stored value into the layout asked for. It reports
// whether the record is live at now, and whether an expiry was dropped
// (a plain layout cannot carry one).
func exportValue(stored []byte, persistent bool, values Values, now int64) (v []byte, live, lostXT bool) {
	if persistent {
		if values == ValuesPlain {
			return stored, true, false
		}
		out := make([]byte, xtLen+len(stored))
		for i := range xtLen {
			out[i] = 0xff // 2^40-1: no expiry
		}
		copy(out[xtLen:], stored)
		return out, true, false
	}
	if len(stored) < xtLen {
		return stored, true, false // never written by ktd
	}
	xt := int64(stored[0])<<32 | int64(stored[1])<<24 | int64(stored[2])<<16 | int64(stored[3])<<8 | int64(stored[4])
	if now > xt {
		return nil, false, false
	}
	if values == ValuesKT {
		return stored, true, false
	}
	return stored[xtLen:], true, xt < xtMax
}

// KTSSName is the name KT gives the -bgs file of database index i.
func KTSSName(i int) string { return fmt.Sprintf("%08d.ktss", i) }
