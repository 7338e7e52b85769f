package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktclient"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// Comparing with a server that has no digest procedure (a real Kyoto
// Tycoon): `ktd verify` reads both databases record by record over KT's own
// protocol instead. The records of A are read in pages (an ordered
// database by pages of keys and get_bulk, a hash database by a cursor; see
// ktclient) and looked up on B with get_bulk; then B's keys are read the
// same way and looked up on A, which finds the records only B holds.
// Differences are looked at again -retry times, -wait apart, as a live
// replica lags its master.

// ktVerifier compares one database of two servers record by record.
type ktVerifier struct {
	a, b    *ktclient.Conn
	db      int
	page    int
	retry   int
	wait    time.Duration
	records int // on A
	diffs   []keyDiff
}

// digestMissing reports whether either server answers the digest
// procedure with 501 (not implemented), as KT does.
func digestMissing(ctx context.Context, addrs []string, timeout time.Duration, tlsCfg *tls.Config) (bool, error) {
	for _, addr := range addrs {
		c, err := ktclient.Dial(ctx, addr, timeout, tlsCfg)
		if err != nil {
			return false, err
		}
		r, err := c.Call("digest", "limit", "1")
		c.Close()
		if err != nil {
			return false, err
		}
		if r.Code == 501 {
			return true, nil
		}
	}
	return false, nil
}

// dbIndex resolves a DB parameter (an index or a name; "" is 0) to an index
// with report, whose db_<i> lines name each database's path.
func dbIndex(c *ktclient.Conn, db string) (int, error) {
	if db == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(db); err == nil {
		return n, nil
	}
	r, err := c.Call("report")
	if err != nil {
		return 0, err
	}
	if err := r.Err("report"); err != nil {
		return 0, err
	}
	found := -1
	for k, v := range r.Out {
		i, ok := strings.CutPrefix(k, "db_")
		n, err := strconv.Atoi(i)
		if !ok || err != nil {
			continue
		}
		_, p, _ := strings.Cut(v, "path=")
		if path.Base(p) == db && n > found {
			found = n // the later of two databases with one name wins, as in KT
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("%s: no database named %q", c.Addr(), db)
	}
	return found, nil
}

// runKTVerify is verify's record-by-record mode.
func runKTVerify(ctx context.Context, addrA, addrB, db string, page, retry int, wait, timeout time.Duration, tlsCfg *tls.Config) (*ktVerifier, error) {
	a, err := ktclient.Dial(ctx, addrA, timeout, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	b, err := ktclient.Dial(ctx, addrB, timeout, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	v := &ktVerifier{a: a, b: b, page: min(page, 10000), retry: retry, wait: wait}
	if v.db, err = dbIndex(a, db); err != nil {
		return nil, err
	}
	if v.page <= 0 {
		v.page = 10000
	}
	found := map[string]keyDiff{}
	// A's records, looked up on B.
	n, err := v.scan(a, func(recs []ktproto.BulkRecord) error {
		other, err := v.lookup(b, keysOf(recs))
		if err != nil {
			return err
		}
		for _, r := range recs {
			ra, rb := describeRecord(r), other[string(r.Key)]
			if ra != rb {
				found[string(r.Key)] = keyDiff{key: string(r.Key), recA: ra, recB: rb}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v.records = n
	// B's records missing on A.
	if _, err := v.scan(b, func(recs []ktproto.BulkRecord) error {
		other, err := v.lookup(a, keysOf(recs))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if _, ok := other[string(r.Key)]; !ok {
				found[string(r.Key)] = keyDiff{key: string(r.Key), recB: describeRecord(r)}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for i := 0; i < retry && len(found) > 0; i++ {
		time.Sleep(wait)
		keys := make([][]byte, 0, len(found))
		for k := range found {
			keys = append(keys, []byte(k))
		}
		ra, err := v.lookup(a, keys)
		if err != nil {
			return nil, err
		}
		rb, err := v.lookup(b, keys)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if ra[string(k)] == rb[string(k)] {
				delete(found, string(k))
			} else {
				found[string(k)] = keyDiff{key: string(k), recA: ra[string(k)], recB: rb[string(k)]}
			}
		}
	}
	for _, d := range found {
		v.diffs = append(v.diffs, d)
	}
	slices.SortFunc(v.diffs, func(x, y keyDiff) int { return strings.Compare(x.key, y.key) })
	return v, nil
}

// scan reads every record of the database on c, page by page, and returns
// how many there were.
func (v *ktVerifier) scan(c *ktclient.Conn, fn func([]ktproto.BulkRecord) error) (int, error) {
	st, err := c.Status(v.db)
	if err != nil {
		return 0, err
	}
	n := 0
	if ktclient.Ordered(int(ktproto.Atoi(st["realtype"]))) {
		defer c.CloseCursor()
		var after []byte
		first := true
		for {
			keys, next, done, err := c.KeyPage(v.db, after, first, v.page)
			if err != nil {
				return n, err
			}
			if done {
				return n, nil
			}
			var recs []ktproto.BulkRecord
			for len(keys) > 0 {
				k := min(len(keys), 1000)
				got, err := c.GetBulk(uint16(v.db), keys[:k])
				if err != nil {
					return n, err
				}
				recs = append(recs, got...)
				keys = keys[k:]
			}
			n += len(recs)
			if err := fn(recs); err != nil {
				return n, err
			}
			after, first = next, false
		}
	}
	ok, err := c.CursorStart(v.db, nil, false)
	if err != nil || !ok {
		return n, err
	}
	defer c.CloseCursor()
	for {
		got, done, err := c.CursorRecords(500)
		if err != nil {
			return n, err
		}
		recs := make([]ktproto.BulkRecord, len(got))
		for i, r := range got {
			recs[i] = ktproto.BulkRecord{Key: r.Key, Value: r.Value, XT: r.XT}
		}
		n += len(recs)
		if err := fn(recs); err != nil {
			return n, err
		}
		if done {
			return n, nil
		}
	}
}

// lookup reads keys on c with get_bulk and describes each record found.
func (v *ktVerifier) lookup(c *ktclient.Conn, keys [][]byte) (map[string]string, error) {
	m := make(map[string]string, len(keys))
	for len(keys) > 0 {
		k := min(len(keys), 1000)
		got, err := c.GetBulk(uint16(v.db), keys[:k])
		if err != nil {
			return nil, err
		}
		for _, r := range got {
			m[string(r.Key)] = describeRecord(r)
		}
		keys = keys[k:]
	}
	return m, nil
}

func keysOf(recs []ktproto.BulkRecord) [][]byte {
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys
}

// describeRecord is "xt value-hash", the form keyDiff compares (xt
// 1099511627775 when the record never expires: KT answers 2^40-1, or
// INT64MAX for a ktopts=p database).
func describeRecord(r ktproto.BulkRecord) string {
	xt := min(r.XT, 1<<40-1)
	sum := sha256.Sum256(r.Value)
	return fmt.Sprintf("%d %x", xt, sum[:8])
}

// verifyKTMode runs verify record by record when either server lacks the
// digest procedure; ok false means both have it.
func verifyKTMode(addrs []string, db string, limit, retry int, wait, timeout time.Duration, tlsCfg *tls.Config, stdout, stderr io.Writer) (code int, ok bool) {
	ctx := context.Background()
	missing, err := digestMissing(ctx, addrs, timeout, tlsCfg)
	if err != nil {
		fmt.Fprintf(stderr, "ktd verify: %v\n", err)
		return 2, true
	}
	if !missing {
		return 0, false
	}
	v, err := runKTVerify(ctx, addrs[0], addrs[1], db, limit, retry, wait, timeout, tlsCfg)
	if err != nil {
		fmt.Fprintf(stderr, "ktd verify: %v\n", err)
		return 2, true
	}
	if len(v.diffs) == 0 {
		fmt.Fprintf(stdout, "ktd verify: %s and %s agree: %d records (DB %d; compared record by record: a server has no digest procedure)\n",
			addrs[0], addrs[1], v.records, v.db)
		return 0, true
	}
	for _, d := range v.diffs {
		fmt.Fprintln(stdout, d.String(addrs[0], addrs[1]))
	}
	fmt.Fprintf(stdout, "ktd verify: %s and %s differ: %d key(s) (DB %d; compared record by record)\n",
		addrs[0], addrs[1], len(v.diffs), v.db)
	return 1, true
}
