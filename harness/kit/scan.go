package kit

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Record is a stored value and its absolute expiration time (XTNone when
// it has none).
type Record struct {
	Value string
	XT    int64
}

// XTNone is the xt get_bulk reports for a record without expiry (KT's
// kc::XTMAX, 2^40 - 1).
const XTNone = 1<<40 - 1

// Scan returns every live record of database 0 of the server at addr whose
// key starts with prefix: match_prefix for the keys, then the binary
// get_bulk (which carries each record's xt) 1000 keys at a time, on one
// connection. A record removed or expired between the two is simply
// absent.
func Scan(ctx context.Context, addr, prefix string, tlsCfg *tls.Config) (map[string]Record, error) {
	c, err := Dial(ctx, addr, 30*time.Second, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	code, body, err := c.Get("match_prefix", "prefix", prefix)
	if err != nil {
		return nil, fmt.Errorf("match_prefix on %s: %w", addr, err)
	}
	if code != 200 {
		return nil, fmt.Errorf("match_prefix on %s answered %d: %q", addr, code, body)
	}
	var keys []string
	for k := range TSV(body) {
		if name, ok := strings.CutPrefix(k, "_"); ok {
			keys = append(keys, name)
		}
	}
	out := make(map[string]Record, len(keys))
	const chunk = 1000
	for i := 0; i < len(keys); i += chunk {
		recs, err := c.GetKeys(keys[i:min(i+chunk, len(keys))])
		if err != nil {
			return nil, fmt.Errorf("get_bulk on %s: %w", addr, err)
		}
		for _, r := range recs {
			out[string(r.Key)] = Record{Value: string(r.Value), XT: r.XT}
		}
	}
	return out, nil
}

// Digest summarizes records (keys, values, expiry) as a short string that
// two servers holding the same records share.
func Digest(recs map[string]Record) string {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q xt=%d\n", k, recs[k].Value, recs[k].XT)
	}
	return fmt.Sprintf("%d records, sha256 %x", len(keys), h.Sum(nil)[:8])
}
