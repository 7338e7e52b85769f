package ktserver_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/testcerts"
	"github.com/ktdproject/ktd/ktserver"
)

// tlsPKI is a CA with a server certificate and a client certificate, and
// another CA with a client certificate the first CA does not know.
type tlsPKI struct {
	ca, otherCA          *testcerts.CA
	server, client, evil *testcerts.Cert
}

func newPKI(t *testing.T) *tlsPKI {
	ca, other := testcerts.NewCA(t, "ktd test CA"), testcerts.NewCA(t, "another CA")
	return &tlsPKI{
		ca: ca, otherCA: other,
		server: ca.Server(t),
		client: ca.Client(t, "replica"),
		evil:   other.Client(t, "impostor"),
	}
}

// serverTLS serves the PKI's server certificate.
func (p *tlsPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server.TLS}}
}

// clientTLS trusts the PKI's CA and presents certs, if any.
func (p *tlsPKI) clientTLS(certs ...*testcerts.Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: p.ca.Pool()}
	for _, c := range certs {
		cfg.Certificates = append(cfg.Certificates, c.TLS)
	}
	return cfg
}

// metric sums the values of the counter or gauge name in reg, over the
// series with the given label name/value pairs.
func metric(reg *prometheus.Registry, name string, labels ...string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// readAll reads nc until it is closed (or 10 s pass) and returns what came.
func readAll(t *testing.T, nc net.Conn) ([]byte, error) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open")
	}
	return b, err
}

func TestTLS_RPCRESTAndBinary(t *testing.T) {
	p := newPKI(t)
	cfg := memConfig()
	cfg.TLS = p.serverTLS()
	_, addr := kttest.StartServer(t, cfg)

	c := kttest.DialTLS(t, addr, p.clientTLS())
	if v := c.Conn().(*tls.Conn).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %#x", v)
	}
	if r := c.RPC("set", "key", "japan", "value", "tokyo"); r.Code != 200 {
		t.Fatalf("set over TLS: %d %q", r.Code, r.Body)
	}
	if got := c.RPC("get", "key", "japan").TSV()["value"]; got != "tokyo" {
		t.Fatalf("get over TLS = %q", got)
	}
	if r := c.Do("GET /japan HTTP/1.1\r\n\r\n"); r.Code != 200 || r.Body != "tokyo" {
		t.Fatalf("REST over TLS: %d %q", r.Code, r.Body)
	}

	// Binary protocol on a TLS connection of its own.
	b := kttest.DialTLS(t, addr, p.clientTLS())
	b.Conn().SetDeadline(time.Now().Add(10 * time.Second))
	req := ktproto.AppendSetBulkRequest(nil, 0, []ktproto.BulkRecord{{Key: []byte("k"), Value: []byte("v"), XT: 1<<40 - 1}})
	req = ktproto.AppendKeyBulkRequest(req, ktproto.MagicGetBulk, 0, []ktproto.BulkRecord{{Key: []byte("k")}, {Key: []byte("japan")}})
	if _, err := b.Conn().Write(req); err != nil {
		t.Fatal(err)
	}
	br := b.Reader()
	reply := make([]byte, 5)
	if _, err := io.ReadFull(br, reply); err != nil || reply[0] != ktproto.MagicSetBulk || reply[4] != 1 {
		t.Fatalf("set_bulk reply %x, %v", reply, err)
	}
	if magic, err := br.ReadByte(); err != nil || magic != ktproto.MagicGetBulk {
		t.Fatalf("get_bulk reply magic %#x, %v", magic, err)
	}
	recs, err := ktproto.ReadGetBulkReply(br)
	if err != nil || len(recs) != 2 || string(recs[0].Value) != "v" || string(recs[1].Value) != "tokyo" {
		t.Fatalf("get_bulk over TLS: %+v, %v", recs, err)
	}
}

func TestTLS_PlainClientIsClosedOthersServed(t *testing.T) {
	p := newPKI(t)
	cfg := memConfig()
	cfg.TLS = p.serverTLS()
	cfg.Registry = prometheus.NewRegistry()
	_, addr := kttest.StartServer(t, cfg)

	good := kttest.DialTLS(t, addr, p.clientTLS())
	good.RPC("set", "key", "a", "value", "1")

	for _, raw := range []string{
		"GET /rpc/get?key=a HTTP/1.1\r\n\r\n",
		string(ktproto.AppendKeyBulkRequest(nil, ktproto.MagicGetBulk, 0, []ktproto.BulkRecord{{Key: []byte("a")}})),
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, raw); err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, nc); bytes.Contains(got, []byte("HTTP/")) || bytes.Contains(got, []byte{ktproto.MagicGetBulk}) {
			t.Errorf("plain client on a TLS port got an answer: %q", got)
		}
		nc.Close()
	}
	kttest.WaitFor(t, 10*time.Second, "the failed handshakes to be counted", func() bool {
		return metric(cfg.Registry, "ktd_tls_handshake_failures_total") == 2
	})
	// The TLS client, open all along, is still served; so is a new one.
	if got := good.RPC("get", "key", "a").TSV()["value"]; got != "1" {
		t.Fatalf("TLS client after plain ones: get = %q", got)
	}
	if r := kttest.DialTLS(t, addr, p.clientTLS()).RPC("echo"); r.Code != 200 {
		t.Fatalf("new TLS client: %d", r.Code)
	}
	// Below TLS 1.2 nothing is negotiated.
	old := p.clientTLS()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if nc, err := tls.Dial("tcp", addr, old); err == nil {
		nc.Close()
		t.Fatal("a TLS 1.1 client completed its handshake")
	}
}

// TestTLS_HandshakeTimeoutAndLimits: a client that connects and never
// handshakes is cut off after -tout, and counts against MaxConns until
// then; IdleTimeout applies to TLS connections.
func TestTLS_HandshakeTimeoutAndLimits(t *testing.T) {
	p := newPKI(t)
	cfg := memConfig()
	cfg.TLS = p.serverTLS()
	cfg.Timeout = time.Second
	cfg.MaxConns = 2
	cfg.IdleTimeout = 3 * time.Second
	cfg.Registry = prometheus.NewRegistry()
	srv, addr := kttest.StartServer(t, cfg)

	start := time.Now() // before the server can have started the handshakes' clock
	var silent []net.Conn
	for range 2 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	for _, nc := range silent {
		if got, _ := readAll(t, nc); len(got) != 0 {
			t.Fatalf("silent client got %q", got)
		}
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("silent clients cut off after %v, before the 1 s timeout", el)
	}
	kttest.WaitFor(t, 10*time.Second, "the timeouts to be counted and the slots freed", func() bool {
		return metric(cfg.Registry, "ktd_tls_handshake_failures_total") == 2 &&
			metric(cfg.Registry, "ktd_open_connections") == 0
	})

	// The slots are free again; a TLS client is served, then closed when
	// idle.
	c := kttest.DialTLS(t, addr, p.clientTLS())
	if r := c.RPC("echo"); r.Code != 200 {
		t.Fatalf("echo: %d", r.Code)
	}
	if got, err := readAll(t, c.Conn()); len(got) != 0 || err != nil {
		t.Fatalf("idle TLS connection: read %q, %v; want a clean close", got, err)
	}
	if n := srv.LimitStats().IdleClosed; n != 1 {
		t.Fatalf("IdleClosed = %d, want 1", n)
	}
}

// TestTLS_MaxConnsCountsHandshakes: connections still handshaking hold
// their slots.
func TestTLS_MaxConnsCountsHandshakes(t *testing.T) {
	p := newPKI(t)
	cfg := memConfig()
	cfg.TLS = p.serverTLS()
	cfg.MaxConns = 1
	cfg.Timeout = 30 * time.Second
	cfg.Registry = prometheus.NewRegistry()
	_, addr := kttest.StartServer(t, cfg)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	kttest.WaitFor(t, 10*time.Second, "the silent connection to be registered", func() bool {
		return metric(cfg.Registry, "ktd_open_connections") == 1
	})
	d := &tls.Dialer{Config: p.clientTLS()}
	if nc, err := d.Dial("tcp", addr); err == nil {
		nc.Close()
		t.Fatal("a client over MaxConns completed its handshake")
	}
	silent.Close()
	kttest.WaitFor(t, 10*time.Second, "the slot to be freed", func() bool {
		return metric(cfg.Registry, "ktd_open_connections") == 0
	})
	if r := kttest.DialTLS(t, addr, p.clientTLS()).RPC("echo"); r.Code != 200 {
		t.Fatalf("echo: %d", r.Code)
	}
}

func TestTLS_ConfigErrors(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name string
		edit func(*ktserver.Config)
		want string
	}{
		{"ReplClientCAs without TLS", func(c *ktserver.Config) { c.ReplClientCAs = p.ca.Pool() }, "ReplClientCAs requires TLS"},
		{"TLS without certificate", func(c *ktserver.Config) { c.TLS = &tls.Config{} }, "no certificate"},
	} {
		cfg := memConfig()
		tc.edit(&cfg)
		srv, err := ktserver.New(cfg)
		if err == nil {
			srv.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want %q", tc.name, err, tc.want)
		}
	}
	// The caller's tls.Config is left alone.
	cfg := memConfig()
	cfg.TLS, cfg.ReplClientCAs = p.serverTLS(), p.ca.Pool()
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if cfg.TLS.ClientAuth != tls.NoClientCert || cfg.TLS.ClientCAs != nil || cfg.TLS.MinVersion != 0 {
		t.Fatalf("New modified the caller's tls.Config: %+v", cfg.TLS)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// replRequest sends a replication request on nc and returns the first
// byte of the answer (0xB1: accepted; 0xBF: refused).
func replRequest(t *testing.T, nc net.Conn) (byte, error) {
	t.Helper()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(ktproto.AppendReplRequest(nil, 0, 0, 99)); err != nil {
		return 0, err
	}
	return bufio.NewReader(nc).ReadByte()
}

// TestTLS_ReplicationMutualAuth: a master with ReplClientCAs streams to a
// replica with a certificate of its CA, and refuses replicas without one,
// or with one of another CA, while the good replica keeps working.
func TestTLS_ReplicationMutualAuth(t *testing.T) {
	p := newPKI(t)
	mcfg := masterConfig(1)
	mcfg.TLS = p.serverTLS()
	mcfg.ReplClientCAs = p.ca.Pool()
	mcfg.Registry = prometheus.NewRegistry()
	logs := &syncBuffer{}
	mcfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelWarn}))
	master, maddr := kttest.StartServer(t, mcfg)
	m := kttest.DialTLS(t, maddr, p.clientTLS()) // ordinary clients need no certificate
	m.RPC("set", "key", "before", "value", "1")

	gcfg := slaveConfig(t, 2, maddr)
	gcfg.ReplTLS = p.clientTLS(p.client)
	good, _ := kttest.StartServer(t, gcfg)
	waitConverged(t, master, good)

	// Raw sessions: answered 0xBF without a certificate, 0xB1 with one.
	nc := kttest.DialTLS(t, maddr, p.clientTLS()).Conn()
	if b, err := replRequest(t, nc); err != nil || b != ktproto.MagicError {
		t.Fatalf("replication without a client certificate: answer %#x, %v; want 0xBF", b, err)
	}
	if got, _ := readAll(t, nc); len(got) != 0 {
		t.Fatalf("refused session went on with %q", got)
	}
	if b, err := replRequest(t, kttest.DialTLS(t, maddr, p.clientTLS(p.client)).Conn()); err != nil || b != ktproto.MagicReplication {
		t.Fatalf("replication with a client certificate: answer %#x, %v; want 0xB1", b, err)
	}
	// A certificate of another CA does not get through the handshake
	// (forced on the client: Go would not even send it, the master naming
	// its acceptable CAs).
	evil := p.clientTLS()
	evil.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.evil.TLS, nil }
	if nc, err := tls.Dial("tcp", maddr, evil); err == nil {
		b, err := replRequest(t, nc)
		nc.Close()
		if err == nil {
			t.Fatalf("replication with a certificate of another CA: answer %#x", b)
		}
	}

	// Replicas without a certificate and with one of another CA replicate
	// nothing; both are counted.
	nocert := slaveConfig(t, 3, maddr)
	nocert.ReplTLS = p.clientTLS()
	nocertSrv, _ := kttest.StartServer(t, nocert)
	wrongCA := slaveConfig(t, 4, maddr)
	wrongCA.ReplTLS = p.clientTLS(p.evil)
	wrongSrv, _ := kttest.StartServer(t, wrongCA)
	kttest.WaitFor(t, 20*time.Second, "both bad replicas to be refused", func() bool {
		// The impostor's client does not even send its certificate (the
		// master names the CAs it accepts), so it is refused like the
		// replica without one.
		s := logs.String()
		return strings.Contains(s, "replication refused") && strings.Contains(s, "sid=3") && strings.Contains(s, "sid=4")
	})
	m.RPC("set", "key", "after", "value", "2")
	waitConverged(t, master, good)
	for name, s := range map[string]*ktserver.Server{"no certificate": nocertSrv, "another CA": wrongSrv} {
		if n := s.DB(0).Count(); n != 0 {
			t.Errorf("replica with %s holds %d records", name, n)
		}
	}
	if n := metric(mcfg.Registry, "ktd_repl_refused_total", "reason", "no_cert"); n < 3 {
		t.Errorf("refusals for want of a certificate = %v, want at least 3", n)
	}
	kttest.WaitFor(t, 10*time.Second, "the forced impostor's handshake failure to be counted", func() bool {
		return metric(mcfg.Registry, "ktd_tls_handshake_failures_total") >= 1
	})
}

// TestTLS_ReplicationUntrustedCertificate: when the port accepts client
// certificates of more CAs than replication does, a replica with a
// certificate the replication pool does not trust completes its handshake
// and is refused.
func TestTLS_ReplicationUntrustedCertificate(t *testing.T) {
	p := newPKI(t)
	both := p.ca.Pool()
	both.AddCert(p.otherCA.Cert)
	mcfg := masterConfig(1)
	mcfg.TLS = p.serverTLS()
	mcfg.TLS.ClientAuth, mcfg.TLS.ClientCAs = tls.VerifyClientCertIfGiven, both
	mcfg.ReplClientCAs = p.ca.Pool()
	mcfg.Registry = prometheus.NewRegistry()
	master, maddr := kttest.StartServer(t, mcfg)
	kttest.DialTLS(t, maddr, p.clientTLS()).RPC("set", "key", "k", "value", "v")

	nc := kttest.DialTLS(t, maddr, p.clientTLS(p.evil)).Conn()
	if b, err := replRequest(t, nc); err != nil || b != ktproto.MagicError {
		t.Fatalf("replication with an untrusted certificate: answer %#x, %v; want 0xBF", b, err)
	}
	bad := slaveConfig(t, 3, maddr)
	bad.ReplTLS = p.clientTLS(p.evil)
	badSrv, _ := kttest.StartServer(t, bad)
	kttest.WaitFor(t, 20*time.Second, "the replica to be refused", func() bool {
		return metric(mcfg.Registry, "ktd_repl_refused_total", "reason", "untrusted") >= 2
	})
	good := slaveConfig(t, 2, maddr)
	good.ReplTLS = p.clientTLS(p.client)
	goodSrv, _ := kttest.StartServer(t, good)
	waitConverged(t, master, goodSrv)
	if n := badSrv.DB(0).Count(); n != 0 {
		t.Fatalf("untrusted replica holds %d records", n)
	}
}

// TestTLS_ReplicaRejectsUnverifiableMaster: a replica that cannot verify
// its master's certificate never replicates from it.
func TestTLS_ReplicaRejectsUnverifiableMaster(t *testing.T) {
	p := newPKI(t)
	mcfg := masterConfig(1)
	mcfg.TLS = &tls.Config{Certificates: []tls.Certificate{p.otherCA.Server(t).TLS}}
	mcfg.Registry = prometheus.NewRegistry()
	_, maddr := kttest.StartServer(t, mcfg)
	other := &tls.Config{RootCAs: p.otherCA.Pool()}
	kttest.DialTLS(t, maddr, other).RPC("set", "key", "k", "value", "v")

	scfg := slaveConfig(t, 2, maddr)
	scfg.ReplTLS = p.clientTLS(p.client) // trusts p.ca only
	scfg.Registry = prometheus.NewRegistry()
	slave, _ := kttest.StartServer(t, scfg)
	kttest.WaitFor(t, 20*time.Second, "the replica to try and give up on the handshake", func() bool {
		return metric(mcfg.Registry, "ktd_tls_handshake_failures_total") >= 1
	})
	if n := slave.DB(0).Count(); n != 0 {
		t.Fatalf("replica holds %d records from a master it could not verify", n)
	}
	if got := metric(mcfg.Registry, "ktd_repl_slaves"); got != 0 {
		t.Fatalf("master streams to %v slaves", got)
	}
}

// TestTLS_AllowPlain: with TLSAllowPlain one port serves TLS and plain
// clients (HTTP and binary); a plain client may idle before its first
// request, as in KT, while a stalled TLS handshake is still cut off; plain
// replication requests are refused when replicas must authenticate.
func TestTLS_AllowPlain(t *testing.T) {
	p := newPKI(t)
	cfg := memConfig()
	cfg.ULog, cfg.SID = true, 1
	cfg.TLS = p.serverTLS()
	cfg.TLSAllowPlain = true
	cfg.ReplClientCAs = p.ca.Pool()
	cfg.Timeout = time.Second
	_, addr := kttest.StartServer(t, cfg)

	idle, err := net.Dial("tcp", addr) // connects now, asks later
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write([]byte{0x16, 0x03, 0x01}) // the start of a TLS record, then nothing

	plain := kttest.Dial(t, addr)
	if r := plain.RPC("set", "key", "k", "value", "plain"); r.Code != 200 {
		t.Fatalf("plain set: %d %q", r.Code, r.Body)
	}
	if got := kttest.DialTLS(t, addr, p.clientTLS()).RPC("get", "key", "k").TSV()["value"]; got != "plain" {
		t.Fatalf("TLS get = %q", got)
	}
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.Write(ktproto.AppendKeyBulkRequest(nil, ktproto.MagicGetBulk, 0, []ktproto.BulkRecord{{Key: []byte("k")}})); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(b)
	if magic, err := br.ReadByte(); err != nil || magic != ktproto.MagicGetBulk {
		t.Fatalf("plain binary get_bulk: magic %#x, %v", magic, err)
	}
	if recs, err := ktproto.ReadGetBulkReply(br); err != nil || len(recs) != 1 || string(recs[0].Value) != "plain" {
		t.Fatalf("plain binary get_bulk: %+v, %v", recs, err)
	}

	// The stalled handshake is closed after the 1 s timeout.
	stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(stalled); err != nil {
		t.Fatalf("stalled handshake: %v (want closed by the server)", err)
	}
	// The idle plain client, past that timeout, is still served.
	time.Sleep(200 * time.Millisecond)
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(idle, "GET /rpc/get?key=k HTTP/1.1\r\n\r\n")
	if r, err := kttest.ReadResponse(bufio.NewReader(idle), false); err != nil || r.Code != 200 {
		t.Fatalf("idle plain client: %v %v", r, err)
	}

	// Replication in plain TCP: refused.
	rc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := replRequest(t, rc); err != nil || b != ktproto.MagicError {
		t.Fatalf("plain replication request answered %#x, %v; want 0xbf", b, err)
	}
}
