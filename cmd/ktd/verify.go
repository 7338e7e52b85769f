package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// verifyUsage documents `ktd verify`.
const verifyUsage = `usage: ktd verify [-db name] [-ranges num] [-limit num] [-retry num] [-wait dur]
                  [-timeout dur] [-tls] [-tlsca file] [-tlscert file -tlskey file]
                  host:port host:port
  Compares one database of two running servers (a master and its replica,
  say) with ktd's digest procedure, range by range, without stopping them.
  The key space is split by paging the first server (-limit records a range,
  or -ranges ranges from its record count); the second is asked for the same
  ranges. A range that differs is re-checked -retry times, -wait apart (a
  live replica lags its master), then bisected down to the differing keys,
  which are printed. Records expired at the time of a call are left out.
  When a server has no digest procedure (a real Kyoto Tycoon), both are
  read and compared record by record over KT's own protocol instead.
  -tls speaks TLS to both servers, verified against -tlsca (else the system
  roots), presenting -tlscert/-tlskey when a server asks for a certificate.
  Exit status: 0 when the servers agree, 1 when they differ, 2 on errors.
`

const (
	// verifyLeaf is the size of a range whose records are listed and compared one by
	// one instead of being bisected further.
	verifyLeaf = 64
	// verifyDefaultLimit is the number of records a range holds by default, the digest
	// procedure's own default.
	verifyDefaultLimit = 100000
	// maxRereads bounds how often bisect starts a range again because its records
	// changed between two calls.
	maxRereads = 1000
)

// verifyMain runs `ktd verify ...` and returns the exit status.
func verifyMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ktd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	dbName := fs.String("db", "", "database (index or name; default: the first)")
	ranges := fs.Int("ranges", 0, "split the key space into about this many ranges (default: -limit records a range)")
	limit := fs.Int("limit", verifyDefaultLimit, "records a range")
	retry := fs.Int("retry", 0, "re-check a differing range this many times before reporting it")
	wait := fs.Duration("wait", time.Second, "pause before each re-check")
	timeout := fs.Duration("timeout", time.Minute, "bound on each request")
	useTLS := fs.Bool("tls", false, "speak TLS to both servers")
	tlsCA := fs.String("tlsca", "", "CA bundle (PEM) that verifies the servers (implies -tls)")
	tlsCert := fs.String("tlscert", "", "client certificate (PEM), with -tlskey (implies -tls)")
	tlsKey := fs.String("tlskey", "", "client certificate's key (PEM)")
	// Flags may come before, between or after the two addresses.
	var addrs []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		addrs = append(addrs, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(addrs) != 2 || *limit <= 0 || *ranges < 0 || *retry < 0 {
		fmt.Fprint(stderr, verifyUsage)
		return 2
	}
	addrs[0], addrs[1] = withPort(addrs[0]), withPort(addrs[1])
	tlsCfg, err := clientTLS(*useTLS, *tlsCA, *tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintf(stderr, "ktd verify: %v\n", err)
		return 2
	}
	if code, ok := verifyKTMode(addrs, *dbName, *limit, *retry, *wait, *timeout, tlsCfg, stdout, stderr); ok {
		return code
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 2, TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: *timeout}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	v := &verifier{
		a:     &rpcClient{addr: withPort(addrs[0]), scheme: scheme, db: *dbName, hc: hc},
		b:     &rpcClient{addr: withPort(addrs[1]), scheme: scheme, db: *dbName, hc: hc},
		limit: *limit,
		retry: *retry,
		wait:  *wait,
		out:   stdout,
	}
	if *ranges > 0 {
		n, err := v.a.count()
		if err != nil {
			fmt.Fprintf(stderr, "ktd verify: %v\n", err)
			return 2
		}
		v.limit = int(max(1, (n+int64(*ranges)-1)/int64(*ranges)))
	}
	if err := v.run(); err != nil {
		fmt.Fprintf(stderr, "ktd verify: %v\n", err)
		return 2
	}
	db := *dbName
	if db == "" {
		db = "0"
	}
	if len(v.diffs) == 0 {
		fmt.Fprintf(stdout, "ktd verify: %s and %s agree: %d records in %d range(s) (DB %s)\n",
			v.a.addr, v.b.addr, v.records, v.ranges, db)
		return 0
	}
	for _, d := range v.diffs {
		fmt.Fprintln(stdout, d.String(v.a.addr, v.b.addr))
	}
	fmt.Fprintf(stdout, "ktd verify: %s and %s differ: %d key(s) in %d of %d range(s) (DB %s)\n",
		v.a.addr, v.b.addr, len(v.diffs), v.badRanges, v.ranges, db)
	return 1
}

// clientTLS is the TLS configuration of a client command (verify): nil without
// -tls and without any TLS file; otherwise servers are verified against caPath (the
// system roots without it) and certPath/keyPath are presented when asked for.
func clientTLS(useTLS bool, caPath, certPath, keyPath string) (*tls.Config, error) {
	if !useTLS && caPath == "" && certPath == "" && keyPath == "" {
		return nil, nil
	}
	if (certPath == "") != (keyPath == "") {
		return nil, fmt.Errorf("-tlscert and -tlskey go together")
	}
	pool, err := loadCA("-tlsca", caPath)
	if err != nil {
		return nil, err
	}
	certs, err := loadCert("-tlscert", certPath, "-tlskey", keyPath)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}, nil
}

// withPort adds KT's default port 1978 to an address without one.
func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return net.JoinHostPort(addr, "1978")
	}
	return addr
}

// rpcClient calls the RPC procedures of one server on one database.
type rpcClient struct {
	addr   string
	scheme string // "http" or "https"
	db     string // "" = the server's first database
	hc     *http.Client
}

// call runs procedure name with params (name, value pairs) and returns the decoded
// output. Parameters travel as Base64 TSV, so keys may hold any bytes.
func (c *rpcClient) call(name string, params ...string) (map[string]string, error) {
	if c.db != "" {
		params = append(params, "DB", c.db)
	}
	var body []byte
	for i := 0; i+1 < len(params); i += 2 {
		body = ktproto.AppendBase64(body, params[i])
		body = append(body, '\t')
		body = ktproto.AppendBase64(body, params[i+1])
		body = append(body, '\n')
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		c.scheme+"://"+c.addr+"/rpc/"+name, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ktproto.ContentTypeTSV+"; colenc=B")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.addr, name, err)
	}
	out := map[string]string{}
	ktproto.ParseTSV(data, ktproto.ColEncOf(resp.Header.Get("Content-Type")), out)
	if resp.StatusCode != http.StatusOK {
		msg := out["ERROR"]
		if msg == "" {
			msg = resp.Status
		}
		if resp.StatusCode == http.StatusNotImplemented && name == "digest" {
			msg += " (the digest procedure is a ktd extension; Kyoto Tycoon has none)"
		}
		return nil, fmt.Errorf("%s: %s: %s", c.addr, name, msg)
	}
	return out, nil
}

// count returns the record count the status procedure reports.
func (c *rpcClient) count() (int64, error) {
	out, err := c.call("status")
	if err != nil {
		return 0, err
	}
	return ktproto.Atoi(out["count"]), nil
}

// rangeDigest is one answer of the digest procedure.
type rangeDigest struct {
	sum   string
	count int
	next  []byte            // nil: the range is done
	recs  map[string]string // with records: key -> "xt value-hash"
}

// span is a key range [from, to); nil from is the first key, nil to the end.
type span struct{ from, to []byte }

func (s span) String() string {
	f, t := "start", "end"
	if s.from != nil {
		f = strconv.Quote(string(s.from))
	}
	if s.to != nil {
		t = strconv.Quote(string(s.to))
	}
	return "[" + f + ", " + t + ")"
}

// digest asks for the digest of s, at most limit records, with the records listed if
// records is set.
func (c *rpcClient) digest(s span, limit int, records bool) (*rangeDigest, error) {
	params := []string{"limit", strconv.Itoa(limit)}
	if s.from != nil {
		params = append(params, "from", string(s.from))
	}
	if s.to != nil {
		params = append(params, "to", string(s.to))
	}
	if records {
		params = append(params, "records", "")
	}
	out, err := c.call("digest", params...)
	if err != nil {
		return nil, err
	}
	d := &rangeDigest{sum: out["digest"], count: int(ktproto.Atoi(out["count"]))}
	if d.sum == "" {
		return nil, fmt.Errorf("%s: digest: no digest in the answer", c.addr)
	}
	if next, ok := out["next"]; ok {
		d.next = []byte(next)
	}
	if records {
		d.recs = map[string]string{}
		for k, v := range out {
			if strings.HasPrefix(k, "_") {
				d.recs[k[1:]] = v
			}
		}
	}
	return d, nil
}

// keyDiff is one differing key.
type keyDiff struct {
	key        string
	recA, recB string // "xt value-hash"; "" = missing
}

func (d keyDiff) String(a, b string) string {
	k := strconv.Quote(d.key)
	switch {
	case d.recA == "":
		return fmt.Sprintf("missing on A (%s): %s", a, k)
	case d.recB == "":
		return fmt.Sprintf("missing on B (%s): %s", b, k)
	}
	xtA, hA, _ := strings.Cut(d.recA, " ")
	xtB, hB, _ := strings.Cut(d.recB, " ")
	var what []string
	if hA != hB {
		what = append(what, "value")
	}
	if xtA != xtB {
		what = append(what, fmt.Sprintf("xt (A %s, B %s)", xtA, xtB))
	}
	return fmt.Sprintf("different %s: %s", strings.Join(what, " and "), k)
}

// verifier compares one database of two servers.
type verifier struct {
	a, b  *rpcClient
	limit int
	retry int
	wait  time.Duration
	out   io.Writer

	ranges, badRanges int
	records           int // on A
	diffs             []keyDiff
	reread            int // ranges looked at again because they changed under bisect
}

// run pages through A, compares each page's range with B, re-checks the differing
// ranges and bisects those that still differ.
func (v *verifier) run() error {
	var bad []span
	var from []byte
	for {
		a, err := v.a.digest(span{from, nil}, v.limit, false)
		if err != nil {
			return err
		}
		s := span{from, a.next}
		b, err := v.b.digest(s, v.limit, false)
		if err != nil {
			return err
		}
		v.ranges++
		v.records += a.count
		if b.next != nil || a.sum != b.sum {
			bad = append(bad, s)
		}
		if a.next == nil {
			break
		}
		from = a.next
	}
	for i := 0; i < v.retry && len(bad) > 0; i++ {
		time.Sleep(v.wait)
		still := bad[:0]
		for _, s := range bad {
			same, err := v.same(s)
			if err != nil {
				return err
			}
			if !same {
				still = append(still, s)
			}
		}
		bad = still
	}
	for _, s := range bad {
		n := len(v.diffs)
		if err := v.bisect(s); err != nil {
			return err
		}
		if len(v.diffs) > n {
			v.badRanges++
		}
	}
	return nil
}

// same reports whether both servers hold the same records in s.
func (v *verifier) same(s span) (bool, error) {
	a, err := v.a.digest(s, v.limit, false)
	if err != nil {
		return false, err
	}
	b, err := v.b.digest(s, v.limit, false)
	if err != nil {
		return false, err
	}
	return a.next == nil && b.next == nil && a.sum == b.sum, nil
}

// bisect finds the differing keys of s: it halves s at the middle key of the server
// holding more records there until a part holds at most verifyLeaf records on each
// side, then compares the records of that part one by one. Parts that agree are
// dropped on the way.
func (v *verifier) bisect(s span) error {
	a, err := v.a.digest(s, v.limit, false)
	if err != nil {
		return err
	}
	b, err := v.b.digest(s, v.limit, false)
	if err != nil {
		return err
	}
	done := a.next == nil && b.next == nil
	if done && a.sum == b.sum {
		return nil // agrees now
	}
	if done && a.count <= verifyLeaf && b.count <= verifyLeaf {
		return v.compareRecords(s)
	}
	fuller, n := v.a, a.count
	if b.next != nil || b.count > a.count {
		fuller, n = v.b, b.count
	}
	h, err := fuller.digest(s, max(1, n/2), false)
	if err != nil {
		return err
	}
	if h.next == nil || (s.from != nil && bytes.Compare(h.next, s.from) <= 0) {
		// The range shrank meanwhile: look again at the whole of it.
		if v.reread++; v.reread > maxRereads {
			return fmt.Errorf("the records of %s change too fast to bisect", s)
		}
		return v.bisect(s)
	}
	if err := v.bisect(span{s.from, h.next}); err != nil {
		return err
	}
	return v.bisect(span{h.next, s.to})
}

// compareRecords lists the records of s on both servers and records the differences.
func (v *verifier) compareRecords(s span) error {
	a, err := v.a.digest(s, verifyLeaf*2, true)
	if err != nil {
		return err
	}
	b, err := v.b.digest(s, verifyLeaf*2, true)
	if err != nil {
		return err
	}
	if a.next != nil || b.next != nil {
		if v.reread++; v.reread > maxRereads { // grew meanwhile
			return fmt.Errorf("the records of %s change too fast to bisect", s)
		}
		return v.bisect(s)
	}
	keys := map[string]bool{}
	for k := range a.recs {
		keys[k] = true
	}
	for k := range b.recs {
		keys[k] = true
	}
	var found []keyDiff
	for k := range keys {
		if ra, rb := a.recs[k], b.recs[k]; ra != rb {
			found = append(found, keyDiff{key: k, recA: ra, recB: rb})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].key < found[j].key })
	v.diffs = append(v.diffs, found...)
	return nil
}
