package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// keysPerSession is the size of each session's key range. Small enough
// that keys are created, changed and deleted many times in a run.
const keysPerSession = 100

// txTimeout bounds every transaction of the workload.
const txTimeout = 30 * time.Second

// pgUniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const pgUniqueViolation = "23505"

// counters are the workload's running totals; safe for concurrent use.
type counters struct {
	committed  atomic.Int64 // transactions committed
	rolledBack atomic.Int64 // transactions ended by an explicit ROLLBACK
	failed     atomic.Int64 // transactions aborted by a failing statement, as planned
	started    atomic.Int64 // transactions begun (for Config.Ops)

	mu          sync.Mutex // guards unexpected and unexpectedN
	unexpected  []string   // the first maxUnexpected errors the workload did not plan
	unexpectedN int        // all of them
}

// maxUnexpected bounds the unplanned errors kept for the report.
const maxUnexpected = 100

func (c *counters) unexpectedList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.unexpected...)
	if c.unexpectedN > len(out) {
		out = append(out, fmt.Sprintf("... %d unplanned errors in all", c.unexpectedN))
	}
	return out
}

func (c *counters) unexpectedErr(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unexpectedN++
	if len(c.unexpected) < maxUnexpected {
		c.unexpected = append(c.unexpected, "workload: "+fmt.Sprintf(format, args...))
	}
}

// session runs transactions on one PostgreSQL connection over its own key
// range, so it knows each of its keys' committed history exactly.
type session struct {
	id    int
	conn  *pgx.Conn
	rng   *rand.Rand
	model *model
	cnt   *counters
	vsize int
	seq   int
	state map[string]string // committed contents of this session's keys
}

func newSession(id int, conn *pgx.Conn, m *model, cnt *counters, vsize int, seed uint64) *session {
	return &session{
		id: id, conn: conn, model: m, cnt: cnt, vsize: vsize,
		rng:   rand.New(rand.NewPCG(seed, uint64(id))),
		state: make(map[string]string),
	}
}

func (s *session) key(n int) string { return fmt.Sprintf("rule/s%d/%04d", s.id, n) }

// value returns a new rule value, unique over the run (session and
// sequence number), a few hundred bytes long, shaped like a real rule. A
// value for a transaction that must not commit carries Marker.
func (s *session) value(key, state string, doomed bool) string {
	s.seq++
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":%q,"rev":"s%d-%d","state":%q,"action":"%s","priority":%d,`,
		key, s.id, s.seq, state, [...]string{"allow", "deny", "challenge", "log"}[s.rng.IntN(4)], s.rng.IntN(1000))
	if doomed {
		b.WriteString(`"note":"` + Marker + `",`)
	}
	b.WriteString(`"match":"`)
	size := s.vsize/2 + s.rng.IntN(s.vsize+1) // vsize/2 .. 1.5*vsize
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789./-"
	for b.Len() < size-2 {
		b.WriteByte(alphabet[s.rng.IntN(len(alphabet))])
	}
	b.WriteString(`"}`)
	return b.String()
}

// pick returns one of the session's keys that exists (present) or does not,
// and false when there is none.
func (s *session) pick(present bool, exclude map[string]bool) (string, bool) {
	start := s.rng.IntN(keysPerSession)
	for i := range keysPerSession {
		k := s.key((start + i) % keysPerSession)
		if _, ok := s.state[k]; ok == present && !exclude[k] {
			return k, true
		}
	}
	return "", false
}

// step runs one randomly chosen kind of transaction (or two, for a
// toggle). It returns an error only when the session cannot go on.
func (s *session) step(ctx context.Context) error {
	n := s.rng.IntN(100)
	switch {
	case n < 22:
		return s.create(ctx)
	case n < 44:
		return s.update(ctx)
	case n < 54:
		return s.remove(ctx)
	case n < 66:
		return s.toggle(ctx)
	case n < 80:
		return s.multi(ctx)
	case n < 91:
		return s.rollback(ctx)
	default:
		return s.fail(ctx)
	}
}

func (s *session) create(ctx context.Context) error {
	k, ok := s.pick(false, nil)
	if !ok {
		return s.update(ctx)
	}
	return s.commitTx(ctx, "create", []op{{key: k, value: s.value(k, "on", false)}})
}

func (s *session) update(ctx context.Context) error {
	k, ok := s.pick(true, nil)
	if !ok {
		return s.create(ctx)
	}
	return s.commitTx(ctx, "update", []op{{key: k, value: s.value(k, "on", false)}})
}

func (s *session) remove(ctx context.Context) error {
	k, ok := s.pick(true, nil)
	if !ok {
		return s.create(ctx)
	}
	return s.commitTx(ctx, "delete", []op{{key: k, del: true}})
}

// toggle switches one rule on and then off in two transactions in quick
// succession: the replicas must end with "off".
func (s *session) toggle(ctx context.Context) error {
	k, ok := s.pick(true, nil)
	if !ok {
		return s.create(ctx)
	}
	if err := s.commitTx(ctx, "toggle on", []op{{key: k, value: s.value(k, "on", false)}}); err != nil {
		return err
	}
	return s.commitTx(ctx, "toggle off", []op{{key: k, value: s.value(k, "off", false)}})
}

// multi changes 2 to 6 rows in one transaction, sometimes the same row
// twice (created, then changed).
func (s *session) multi(ctx context.Context) error {
	ops := s.plan(2+s.rng.IntN(5), false)
	return s.commitTx(ctx, "multi-row", ops)
}

// plan returns n valid row changes applied in order to the session's
// state, without changing it.
func (s *session) plan(n int, doomed bool) []op {
	saved := s.state
	s.state = make(map[string]string, len(saved))
	for k, v := range saved {
		s.state[k] = v
	}
	defer func() { s.state = saved }()
	var ops []op
	for range n {
		var o op
		if k, ok := s.pick(true, nil); ok && s.rng.IntN(3) > 0 {
			if s.rng.IntN(4) == 0 {
				o = op{key: k, del: true}
			} else {
				o = op{key: k, value: s.value(k, "on", doomed)}
			}
		} else if k, ok := s.pick(false, nil); ok {
			o = op{key: k, value: s.value(k, "on", doomed)}
		} else {
			continue
		}
		s.apply(o)
		ops = append(ops, o)
	}
	return ops
}

func (s *session) apply(o op) {
	if o.del {
		delete(s.state, o.key)
	} else {
		s.state[o.key] = o.value
	}
}

// rollback makes 1 to 3 changes with marked values, then rolls back.
func (s *session) rollback(ctx context.Context) error {
	ops := s.plan(1+s.rng.IntN(3), true)
	ctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	s.cnt.started.Add(1)
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("session %d: begin: %w", s.id, err)
	}
	defer tx.Rollback(ctx)
	if err := s.execAll(ctx, tx, ops); err != nil {
		s.cnt.unexpectedErr("session %d: rolled-back transaction: %v", s.id, err)
		return nil
	}
	if err := tx.Rollback(ctx); err != nil {
		return fmt.Errorf("session %d: rollback: %w", s.id, err)
	}
	s.cnt.rolledBack.Add(1)
	return nil
}

// fail writes marked values, then runs a statement that fails on a
// duplicate primary key, so PostgreSQL aborts the transaction. Half the
// time the failing statement is a two-row INSERT whose first row is new:
// the trigger has written that row to KT before the second row fails.
func (s *session) fail(ctx context.Context) error {
	existing, ok := s.pick(true, nil)
	if !ok {
		return s.create(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	s.cnt.started.Add(1)
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("session %d: begin: %w", s.id, err)
	}
	defer tx.Rollback(ctx)
	var failing error
	if fresh, ok := s.pick(false, nil); ok && s.rng.IntN(2) == 0 {
		_, failing = tx.Exec(ctx, "INSERT INTO rules (id, value) VALUES ($1, $2), ($3, $4)",
			fresh, s.value(fresh, "on", true), existing, s.value(existing, "on", true))
	} else {
		if err := execOp(ctx, tx, op{key: existing, value: s.value(existing, "on", true)}, true); err != nil {
			s.cnt.unexpectedErr("session %d: failing transaction: %v", s.id, err)
			return nil
		}
		_, failing = tx.Exec(ctx, "INSERT INTO rules (id, value) VALUES ($1, $2)", existing, s.value(existing, "on", true))
	}
	var pgErr *pgconn.PgError
	if !errors.As(failing, &pgErr) || pgErr.Code != pgUniqueViolation {
		s.cnt.unexpectedErr("session %d: duplicate insert of %q: got %v, want a unique violation", s.id, existing, failing)
		return nil
	}
	if err := tx.Rollback(ctx); err != nil {
		return fmt.Errorf("session %d: rollback after a failed statement: %w", s.id, err)
	}
	s.cnt.failed.Add(1)
	return nil
}

// commitTx runs ops in one transaction and commits it; once COMMIT
// returns, the changes go into the model with that time. A statement that
// fails is an unexpected error: the transaction is rolled back and the
// session goes on.
func (s *session) commitTx(ctx context.Context, what string, ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	s.cnt.started.Add(1)
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("session %d: begin: %w", s.id, err)
	}
	defer tx.Rollback(ctx)
	if err := s.execAll(ctx, tx, ops); err != nil {
		s.cnt.unexpectedErr("session %d: %s: %v", s.id, what, err)
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		// The outcome is unknown to the client: take PostgreSQL's word
		// for the keys involved, so that the session's state stays true.
		s.cnt.unexpectedErr("session %d: %s: commit: %v", s.id, what, err)
		return s.resync(ctx, ops)
	}
	at := time.Now()
	s.model.commit(at, ops)
	for _, o := range ops {
		s.apply(o)
	}
	s.cnt.committed.Add(1)
	return nil
}

// execAll runs ops in order inside tx, tracking which keys exist as the
// transaction sees them.
func (s *session) execAll(ctx context.Context, tx pgx.Tx, ops []op) error {
	exists := make(map[string]bool)
	for _, o := range ops {
		e, ok := exists[o.key]
		if !ok {
			_, e = s.state[o.key]
		}
		if err := execOp(ctx, tx, o, e); err != nil {
			return err
		}
		exists[o.key] = !o.del
	}
	return nil
}

// execOp runs one row change (INSERT when the row does not exist, else
// UPDATE, or DELETE) and checks that it touched exactly one row.
func execOp(ctx context.Context, tx pgx.Tx, o op, exists bool) error {
	var (
		name = "INSERT"
		sql  = "INSERT INTO rules (id, value) VALUES ($1, $2)"
		args = []any{o.key, o.value}
	)
	switch {
	case o.del:
		name, sql, args = "DELETE", "DELETE FROM rules WHERE id = $1", []any{o.key}
	case exists:
		name, sql = "UPDATE", "UPDATE rules SET value = $2 WHERE id = $1"
	}
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s %q: %w", name, o.key, err)
	}
	if n := tag.RowsAffected(); n != 1 {
		return fmt.Errorf("%s %q touched %d rows, want 1", name, o.key, n)
	}
	return nil
}

// resync reloads the given keys' committed values from PostgreSQL.
func (s *session) resync(ctx context.Context, ops []op) error {
	for _, o := range ops {
		var v string
		err := s.conn.QueryRow(ctx, "SELECT value FROM rules WHERE id = $1", o.key).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			delete(s.state, o.key)
		case err != nil:
			return fmt.Errorf("session %d: reload %q: %w", s.id, o.key, err)
		default:
			s.state[o.key] = v
		}
	}
	return nil
}
