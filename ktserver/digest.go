package ktserver

// The digest procedure (a ktd extension): online divergence detection between a master
// and its replicas (ktd verify).

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/ktdproject/ktd/internal/store"
)

// defaultDigestLimit is the number of records one digest call covers unless limit says.
const defaultDigestLimit = 100000

// procDigest answers the SHA-256 digest of the live records of a key range, read from
// one consistent snapshot (store.DB.Digest).
//
// Input: DB; from (first key, inclusive; absent = the first key); to (end key,
// exclusive; absent = no end); limit (records covered at most; absent or non-positive
// = 100000); records (flag: also list the covered records).
// Output: digest (hex), count, next (the key where the next page starts; absent when the
// range is done) and, with records, "_<key>" = "<absolute xt> <hex SHA-256 of the value>"
// for each covered record.
func procDigest(r *call) error {
	db, err := r.needDB()
	if err != nil {
		return err
	}
	var from, to []byte
	if v, ok := r.in["from"]; ok {
		from = []byte(v)
	}
	if v, ok := r.in["to"]; ok {
		to = []byte(v)
	}
	limit := defaultDigestLimit
	if v, ok := r.in["limit"]; ok {
		if n := atoi(v); n > 0 {
			limit = int(min(n, int64(^uint(0)>>1)))
		}
	}
	r.s.stats.misc.Add(1)
	var list func(rec store.RangeRecord)
	if r.has("records") {
		list = func(rec store.RangeRecord) {
			vsum := sha256.Sum256(rec.Value)
			r.set("_"+string(rec.Key), strconv.FormatInt(rec.XT, 10)+" "+hex.EncodeToString(vsum[:]))
		}
	}
	sum, count, next, err := db.DigestFunc(from, to, limit, list)
	if err != nil {
		return err
	}
	r.set("digest", hex.EncodeToString(sum[:]))
	r.setInt("count", int64(count))
	if next != nil {
		r.set("next", string(next))
	}
	return nil
}
