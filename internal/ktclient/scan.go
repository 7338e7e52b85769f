package ktclient

import (
	"bytes"
	"errors"
	"strconv"
)

// Reading a whole database over KT's RPC. KT has no ranged scan: its
// cursors return one record per request, and match_prefix returns the keys
// under a prefix but cannot start after a given key. Two ways are exact:
//
//   - ordered databases (KC tree types: .kct, .kcf, '+', '%'): match_prefix
//     on a tree database jumps to the prefix and returns the first keys in
//     order, so pages of keys are fetched by "leapfrogging": a cursor finds
//     the first key N after the last key L copied, and the page is the
//     keys under N's shortest prefix that no key <= L has (lcp(L, N) plus
//     N's next byte); every key under it is after L. Dense key spaces give
//     full pages; a page costs three requests.
//   - hash databases (.kch, '*', ':', '-', '.kcd'): match_prefix scans the
//     whole database on every call, so a cursor walks it instead, one
//     pipelined cur_get (with step) per record.
//
// Keys and records added while a scan runs may or may not be seen, and
// removed ones may still be; a replica copying this way replays the
// master's update log from before the scan began, which settles both.

// Ordered reports whether a KC database type number (status's realtype)
// keeps its keys in order, so that match_prefix and cursor jumps work on
// ranges: the tree types 17 (prototype tree), 33 (cache tree), 49 (file
// tree) and 65 (directory tree).
func Ordered(realtype int) bool {
	switch realtype {
	case 17, 33, 49, 65:
		return true
	}
	return false
}

// Status returns database db's status map (count, size, type, realtype...).
func (c *Conn) Status(db int) (map[string]string, error) {
	r, err := c.Call("status", "DB", strconv.Itoa(db))
	if err != nil {
		return nil, err
	}
	if err := r.Err("status"); err != nil {
		return nil, err
	}
	return r.Out, nil
}

// scanCursor is the cursor id the scans use on their connection (KT keeps
// cursors per connection).
const scanCursor = "7146"

// NextKey returns the first live key of database db after after (from the
// first key when first is set), or ok false when there is none. It leaves
// the connection's scan cursor on that key.
func (c *Conn) NextKey(db int, after []byte, first bool) (key []byte, ok bool, err error) {
	jump := Call{"cur_jump", []string{"DB", strconv.Itoa(db), "CUR", scanCursor}}
	if !first {
		jump.Params = append(jump.Params, "key", string(after)+"\x00")
	}
	rs, err := c.Pipeline([]Call{jump, {"cur_get_key", []string{"CUR", scanCursor}}})
	if err != nil {
		return nil, false, err
	}
	if rs[0].Code == 450 || rs[1].Code == 450 {
		return nil, false, nil // nothing at or after the position (or it vanished meanwhile)
	}
	if err := rs[0].Err("cur_jump"); err != nil {
		return nil, false, err
	}
	if err := rs[1].Err("cur_get_key"); err != nil {
		return nil, false, err
	}
	k, found := rs[1].Out["key"]
	if !found {
		return nil, false, errors.New("cur_get_key: no key in the answer")
	}
	return []byte(k), true, nil
}

// KeyPage returns the next page of keys of an ordered database after after
// (from the start when first is set): at most max keys, all greater than
// after, sorted, with no key between after and the page's first key. next
// is where the following page starts (the page's last key, or the key the
// page was looked up for when it vanished meanwhile). done means there is
// no key after after.
func (c *Conn) KeyPage(db int, after []byte, first bool, max int) (keys [][]byte, next []byte, done bool, err error) {
	n, ok, err := c.NextKey(db, after, first)
	if err != nil || !ok {
		return nil, nil, !ok && err == nil, err
	}
	l := 0
	if !first {
		for l < len(after) && l < len(n) && after[l] == n[l] {
			l++
		}
	}
	// n > after, so n is longer than their common prefix; every key under
	// n[:l+1] is greater than after. (From the start, n may be the empty
	// key: then every key is under the prefix.)
	keys, err = c.MatchPrefix(db, n[:min(l+1, len(n))], max)
	if err != nil {
		return nil, nil, false, err
	}
	// Keep only keys after after (all are, unless the database is not
	// ordered the way its type says).
	for len(keys) > 0 && !first && bytes.Compare(keys[0], after) <= 0 {
		keys = keys[1:]
	}
	if len(keys) == 0 {
		// n vanished between the two calls: carry on after it.
		return keys, n, false, nil
	}
	return keys, keys[len(keys)-1], false, nil
}

// Record is one record read over RPC; XT is absolute (KT's 2^40-1 when the
// record never expires).
type Record struct {
	Key, Value []byte
	XT         int64
}

// xtNone is KT's "no expiry" (2^40-1).
const xtNone = 1<<40 - 1

// CursorStart positions the connection's scan cursor on database db: on its
// first record, or with from on that exact key (a hash database's cursor
// jumps only to a key that exists). ok false: no such record.
func (c *Conn) CursorStart(db int, from []byte, exact bool) (ok bool, err error) {
	params := []string{"DB", strconv.Itoa(db), "CUR", scanCursor}
	if exact {
		params = append(params, "key", string(from))
	}
	r, err := c.Call("cur_jump", params...)
	if err != nil {
		return false, err
	}
	if r.Code == 450 {
		return false, nil
	}
	return true, r.Err("cur_jump")
}

// CursorSkip steps the scan cursor past its current record. ok false: the
// cursor went past the end.
func (c *Conn) CursorSkip() (ok bool, err error) {
	r, err := c.Call("cur_step", "CUR", scanCursor)
	if err != nil {
		return false, err
	}
	if r.Code == 450 {
		return false, nil
	}
	return true, r.Err("cur_step")
}

// CursorRecords reads up to n records from the scan cursor, stepping past
// each, with n cur_get requests pipelined. done: the cursor reached the end.
func (c *Conn) CursorRecords(n int) (recs []Record, done bool, err error) {
	calls := make([]Call, n)
	for i := range calls {
		calls[i] = Call{"cur_get", []string{"CUR", scanCursor, "step", ""}}
	}
	rs, err := c.Pipeline(calls)
	if err != nil {
		return nil, false, err
	}
	recs = make([]Record, 0, n)
	for _, r := range rs {
		if r.Code == 450 {
			return recs, true, nil
		}
		if err := r.Err("cur_get"); err != nil {
			return nil, false, err
		}
		rec := Record{Key: []byte(r.Out["key"]), Value: []byte(r.Out["value"]), XT: xtNone}
		if xt, ok := r.Out["xt"]; ok {
			rec.XT = ktAtoi(xt)
		}
		recs = append(recs, rec)
	}
	return recs, false, nil
}

// CloseCursor deletes the scan cursor (KT keeps it until the connection
// closes otherwise).
func (c *Conn) CloseCursor() error {
	_, err := c.Call("cur_delete", "CUR", scanCursor)
	return err
}

func ktAtoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return xtNone
	}
	return n
}
