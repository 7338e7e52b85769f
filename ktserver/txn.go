package ktserver

import (
	"errors"
	"time"

	"github.com/ktdproject/ktd/internal/store"
)

// Per-connection transactions, ktd's native form of the play_script procedures kt_fdw
// calls (the original shipped them as Lua around KT's whole-database transaction):
//
//	ktfdwbegintransaction  start a transaction on this connection
//	ktfdwcommit            write all of its changes, database by database
//	ktfdwabort             drop them
//
// While a transaction is open, every procedure of the connection (RPC, REST, binary)
// reads and writes through it: its writes are visible to this connection only. Each
// database gets its own store.Tx on first use; commit writes each one as a single batch
// with its update-log records, so replicas receive a database's part of a transaction
// whole or not at all. Nothing is locked while a transaction is open; a key another
// client changed after the transaction read it makes the commit fail (store.Tx). Closing
// the connection, or leaving it idle for Config.TxIdleTimeout, aborts the transaction.

// connTx is a connection's open transaction.
type connTx struct {
	txs      map[int]*store.Tx // by database index, begun on first use
	lastUsed time.Time
}

var errNoTx = &rpcError{codeLogic, "no transaction is open on this connection"}

// Names of the transaction procedures.
const (
	procTxBegin  = "ktfdwbegintransaction"
	procTxCommit = "ktfdwcommit"
	procTxAbort  = "ktfdwabort"
)

// txProcedure runs play_script procedure name if it is one of the transaction
// procedures, reporting whether it was.
func (c *conn) txProcedure(name string) (error, bool) {
	switch name {
	case procTxBegin:
		if c.tx != nil {
			// A client that lost track (e.g. its abort failed) starts afresh.
			c.abortTx("restarted by " + procTxBegin)
		}
		c.tx = &connTx{txs: map[int]*store.Tx{}, lastUsed: time.Now()}
		c.s.stats.txBegun.Add(1)
		return nil, true
	case procTxCommit:
		if c.tx == nil {
			return errNoTx, true
		}
		return c.commitTx(), true
	case procTxAbort:
		if c.tx == nil {
			return errNoTx, true
		}
		c.abortTx("")
		return nil, true
	}
	return nil, false
}

// dbAt returns database i as this connection sees it: the database itself, or inside a
// transaction the transaction's view of it.
func (c *conn) dbAt(i int) *store.DB {
	db := c.s.dbs[i]
	if c.tx == nil {
		return db
	}
	c.tx.lastUsed = time.Now()
	if tx, ok := c.tx.txs[i]; ok {
		return tx.DB()
	}
	tx, err := db.Begin()
	if err != nil {
		return db // closed: the operation fails on its own
	}
	c.tx.txs[i] = tx
	return tx.DB()
}

// commitTx commits the open transaction database by database (in index order) and
// closes it. After a failure the remaining databases' parts are dropped.
func (c *conn) commitTx() error {
	t := c.tx
	c.tx = nil
	var firstErr error
	committed := 0
	for i := range c.s.dbs {
		tx, ok := t.txs[i]
		if !ok {
			continue
		}
		if firstErr != nil {
			tx.Abort()
			continue
		}
		n := tx.Len()
		if err := tx.Commit(); err != nil {
			firstErr = err
			continue
		}
		committed += n
	}
	if firstErr != nil {
		if errors.Is(firstErr, store.ErrTxConflict) {
			c.s.stats.txConflicts.Add(1)
		}
		c.s.stats.txAborted.Add(1)
		c.s.logger.Info("transaction commit failed", "remote", c.remote(), "err", firstErr)
		return firstErr
	}
	c.s.stats.txCommitted.Add(1)
	c.s.logger.Debug("transaction committed", "remote", c.remote(), "changes", committed)
	return nil
}

// abortTx drops the open transaction, if any; why, when set, is logged.
func (c *conn) abortTx(why string) {
	t := c.tx
	if t == nil {
		return
	}
	c.tx = nil
	n := 0
	for _, tx := range t.txs {
		n += tx.Len()
		tx.Abort()
	}
	c.s.stats.txAborted.Add(1)
	if why != "" {
		c.s.logger.Info("transaction aborted", "remote", c.remote(), "reason", why, "changes", n)
	}
}

// idleDeadline is the read deadline while waiting for the next request: none, unless a
// transaction is open and Config.TxIdleTimeout bounds it.
func (c *conn) idleDeadline() time.Time {
	if c.tx == nil || c.s.cfg.TxIdleTimeout <= 0 {
		return time.Time{}
	}
	return c.tx.lastUsed.Add(c.s.cfg.TxIdleTimeout)
}

// idleTimedOut logs the abort of a transaction whose connection waited past its idle
// deadline (the connection is closed next, which aborts it).
func (c *conn) idleTimedOut(err error) {
	if c.tx != nil && isTimeout(err) && !c.isClosing() {
		c.abortTx("idle for " + c.s.cfg.TxIdleTimeout.String())
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

func (c *conn) remote() string { return c.nc.RemoteAddr().String() }
