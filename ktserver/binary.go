package ktserver

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/rawtcp"
	"github.com/ktdproject/ktd/internal/store"
)

// serveBinary reads and answers one binary-protocol request. It reports
// whether the connection stays open. Bulk operations answer a failure with
// a single 0xBF and close; play_script keeps the connection; an unknown
// magic byte closes it without a word.
func (c *conn) serveBinary() bool {
	magic, _ := c.br.ReadByte()
	start := time.Now()
	var keep bool
	var proc string
	switch magic {
	case ktproto.MagicSetBulk:
		proc, keep = "bin_set_bulk", c.binSetBulk()
	case ktproto.MagicRemoveBulk:
		proc, keep = "bin_remove_bulk", c.binRemoveBulk()
	case ktproto.MagicGetBulk:
		proc, keep = "bin_get_bulk", c.binGetBulk()
	case ktproto.MagicPlayScript:
		proc, keep = "bin_play_script", c.binPlayScript()
	case ktproto.MagicReplication:
		proc, keep = "bin_replication", c.binReplication()
	default:
		c.s.logger.Debug("unknown binary magic; closing", "magic", magic, "remote", c.nc.RemoteAddr().String())
		return false
	}
	code := codeOK
	if !keep {
		code = codeInternal
	}
	c.s.metrics.observe(proc, code, time.Since(start))
	return keep
}

// binFail answers a failed bulk operation: 0xBF unless no-reply, then close.
func (c *conn) binFail(flags uint32) bool {
	if flags&ktproto.FlagNoReply == 0 {
		c.out = append(c.out, ktproto.MagicError)
	}
	return false
}

// groupByDB splits records by database index, skipping (as KT does,
// silently) indexes no database has. It keeps request order within a
// database.
func (c *conn) groupByDB(recs []ktproto.BulkRecord) map[uint16][]int {
	groups := make(map[uint16][]int, 1)
	for i, r := range recs {
		if int(r.DBIdx) >= len(c.s.dbs) {
			continue
		}
		groups[r.DBIdx] = append(groups[r.DBIdx], i)
	}
	return groups
}

// writeDB returns the database a bulk write of the given flags goes to.
// A no-reply write is committed without waiting for the WAL sync, so that
// it is visible at once, as on KT, rather than after an fsync nobody waits
// for: the connection syncs the database before it next answers anything
// or waits for input (syncUnsynced), and any later synced commit covers it
// too.
func (c *conn) writeDB(dbi int, flags uint32) *store.DB {
	db := c.dbAt(dbi)
	if flags&ktproto.FlagNoReply == 0 || c.tx != nil || c.s.cfg.NoSync || db.Spec().InMemory {
		return db
	}
	if !slices.Contains(c.unsynced, dbi) {
		c.unsynced = append(c.unsynced, dbi)
	}
	return db.Unsynced()
}

// syncUnsynced makes the connection's no-reply writes durable. A failure
// is logged: the writes were never acknowledged, and the next synced
// commit retries.
func (c *conn) syncUnsynced() {
	for _, dbi := range c.unsynced {
		if err := c.s.dbs[dbi].Synchronize(false); err != nil {
			c.s.logger.Warn("sync after no-reply writes failed", "db", c.s.dbs[dbi].Spec().Name, "err", err)
		}
	}
	c.unsynced = c.unsynced[:0]
}

func (c *conn) binSetBulk() bool {
	flags, recs, err := ktproto.ReadSetBulkLimited(c.br, &c.lim)
	if err != nil {
		c.noteRefusal(err)
		return c.binFail(flags)
	}
	var hits uint32
	for dbi, idx := range c.groupByDB(recs) {
		srecs := make([]store.Record, len(idx))
		for j, i := range idx {
			srecs[j] = store.Record{Key: recs[i].Key, Value: recs[i].Value, XT: recs[i].XT}
		}
		n, err := c.writeDB(int(dbi), flags).SetBulk(srecs, false)
		c.s.stats.set.Add(int64(len(srecs)))
		hits += uint32(n)
		if err != nil {
			c.s.stats.setMiss.Add(int64(len(srecs) - n))
			c.s.logger.Warn("binary set_bulk failed", "err", err)
			return c.binFail(flags)
		}
	}
	if flags&ktproto.FlagNoReply == 0 {
		c.out = ktproto.AppendCountReply(c.out, ktproto.MagicSetBulk, hits)
	}
	return true
}

func (c *conn) binRemoveBulk() bool {
	flags, recs, err := ktproto.ReadKeyBulkLimited(c.br, &c.lim)
	if err != nil {
		c.noteRefusal(err)
		return c.binFail(flags)
	}
	var hits uint32
	for dbi, idx := range c.groupByDB(recs) {
		keys := make([][]byte, len(idx))
		for j, i := range idx {
			keys[j] = recs[i].Key
		}
		n, err := c.writeDB(int(dbi), flags).RemoveBulk(keys, false)
		c.s.stats.remove.Add(int64(len(keys)))
		if err != nil {
			c.s.logger.Warn("binary remove_bulk failed", "err", err)
			return c.binFail(flags)
		}
		c.s.stats.removeMiss.Add(int64(len(keys) - n))
		hits += uint32(n)
	}
	if flags&ktproto.FlagNoReply == 0 {
		c.out = ktproto.AppendCountReply(c.out, ktproto.MagicRemoveBulk, hits)
	}
	return true
}

// binGetBulk answers found records in request order. get_bulk ignores the
// no-reply flag: it always replies.
func (c *conn) binGetBulk() bool {
	_, recs, err := ktproto.ReadKeyBulkLimited(c.br, &c.lim)
	if err != nil {
		c.noteRefusal(err)
		return c.binFail(0)
	}
	found := make([]bool, len(recs))
	for dbi, idx := range c.groupByDB(recs) {
		db := c.dbAt(int(dbi))
		keys := make([][]byte, len(idx))
		for j, i := range idx {
			keys[j] = recs[i].Key
		}
		err := db.GetEach(keys, func(j int, rec store.Record, ok bool) {
			if !ok {
				return
			}
			i := idx[j]
			found[i] = true
			recs[i].Value, recs[i].XT = rec.Value, rec.XT
			if db.Spec().Persistent {
				recs[i].XT = 1<<63 - 1 // KT reports INT64MAX for ktopts=p databases
			}
		})
		c.s.stats.get.Add(int64(len(keys)))
		if err != nil {
			c.s.logger.Warn("binary get_bulk failed", "err", err)
			return c.binFail(0)
		}
	}
	hits := recs[:0]
	for i, r := range recs {
		if found[i] {
			hits = append(hits, r)
		}
	}
	c.s.stats.getMiss.Add(int64(len(recs) - len(hits)))
	c.out = ktproto.AppendGetBulkReply(c.out, hits)
	return true
}

// binPlayScript answers play_script: a failure is a single 0xBF and the
// connection stays open; a malformed request closes it.
func (c *conn) binPlayScript() bool {
	flags, name, args, err := ktproto.ReadPlayScriptLimited(c.br, &c.lim)
	if err != nil {
		if errors.Is(err, ktproto.ErrTooLarge) || errors.Is(err, errBusy) {
			// Over a limit: refused like an oversized bulk frame.
			c.noteRefusal(err)
			return c.binFail(flags)
		}
		return false
	}
	noReply := flags&ktproto.FlagNoReply != 0
	in := make(map[string]string, len(args))
	for _, kv := range args {
		in[kv.Key] = kv.Value
	}
	out, rv, err := map[string]string(nil), 0, error(nil)
	if terr, ok := c.txProcedure(name); ok {
		err = terr
	} else {
		out, rv, err = c.s.scriptCall(c, name, in)
	}
	if err != nil || rv != 0 {
		if !noReply {
			c.out = append(c.out, ktproto.MagicError)
		}
		return true
	}
	if !noReply {
		kvs := make([]ktproto.KV, 0, len(out))
		for k, v := range out {
			kvs = append(kvs, ktproto.KV{Key: k, Value: v})
		}
		// KT's output map is a std::map: pairs in key order.
		slices.SortFunc(kvs, func(a, b ktproto.KV) int { return strings.Compare(a.Key, b.Key) })
		c.out = ktproto.AppendPlayScriptReply(c.out, kvs)
	}
	return true
}

// binReplication answers a replication request: without an update log
// 0xBF and close, as KT; with one, the connection becomes a replication
// stream until the slave leaves.
func (c *conn) binReplication() bool {
	flags, ts, sid, err := ktproto.ReadReplRequest(c.br)
	if err != nil {
		return false
	}
	if reason, err := c.replRefusal(); err != nil {
		c.s.metrics.replRefused.WithLabelValues(reason).Inc()
		c.s.logger.Warn("replication refused: the client is not an authenticated replica",
			"remote", c.remote(), "sid", sid, "err", err)
		c.out = append(c.out, ktproto.MagicError)
		return false
	}
	m := c.s.repl.master
	if m == nil {
		c.out = append(c.out, ktproto.MagicError)
		return false
	}
	if !c.flush() {
		return false
	}
	// The stream is written in rounds with the server otherwise often idle: with
	// raw system calls, which do not wake the runtime's monitor (rawtcp).
	if err := m.Serve(c.s.ctx, rawtcp.Wrap(c.nc), c.br, flags, ts, sid); err != nil {
		c.s.logger.Info("replication stream ended", "slave", c.nc.RemoteAddr().String(), "err", err)
	}
	return false
}
