package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/testcerts"
	"github.com/ktdproject/ktd/ktserver"
)

func TestParse_TLS(t *testing.T) {
	o, err := Parse([]string{"-tlscert", "c.pem", "-tlskey", "k.pem", "-tlsca", "ca.pem", "-tlsclients",
		"-sid", "2", "-mhost", "m", "-rts", "r.rts", "-mtls", "*"})
	if err != nil {
		t.Fatal(err)
	}
	if o.TLSCert != "c.pem" || o.TLSKey != "k.pem" || o.TLSCA != "ca.pem" || !o.TLSClients || !o.MasterTLS {
		t.Fatalf("parsed %+v", o)
	}
	if o, err := Parse([]string{"-cert", "x"}); err != nil || len(o.Notices) != 1 || !strings.Contains(o.Notices[0], "-tlscert") {
		t.Fatalf("Cloudflare -cert: %v, notices %q", err, o.Notices)
	}
}

func TestParse_TLSErrors(t *testing.T) {
	repl := []string{"-sid", "2", "-mhost", "m", "-rts", "r.rts"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-tlscert", "c.pem"}, "-tlscert needs -tlskey"},
		{[]string{"-tlskey", "k.pem"}, "-tlskey needs -tlscert"},
		{[]string{"-tlscert", "c.pem", "-tlskey", "k.pem", "-tlsclients"}, "-tlsclients needs -tlsca"},
		{[]string{"-tlsca", "ca.pem", "-tlsclients"}, "-tlsclients needs -tlscert and -tlskey"},
		{[]string{"-tlsca", "ca.pem"}, "-tlsca needs -tlscert and -tlskey"},
		{[]string{"-mtls"}, "-mtls needs -mhost"},
		{append([]string{"-tlsca", "ca.pem"}, repl...), "-tlsca needs -tlscert and -tlskey"},
		{[]string{"-tlscert"}, "-tlscert needs a value"},
		{[]string{"-dmn", "-tlscert", "c.pem", "-tlskey", "/k.pem"}, "c.pem: a daemon can accept absolute path only"},
	} {
		_, err := Parse(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	// Valid combinations.
	for _, args := range [][]string{
		{"-tlscert", "c.pem", "-tlskey", "k.pem"},
		{"-tlscert", "c.pem", "-tlskey", "k.pem", "-tlsca", "ca.pem", "-tlsclients"},
		append([]string{"-mtls"}, repl...),
		append([]string{"-mtls", "-tlsca", "ca.pem"}, repl...),
	} {
		if _, err := Parse(args); err != nil {
			t.Errorf("Parse(%q) = %v", args, err)
		}
	}
}

// tlsFiles writes a CA, a certificate for both server and client use and
// its key to dir.
func tlsFiles(t *testing.T, dir string) (ca *testcerts.CA, caPath, certPath, keyPath string) {
	ca = testcerts.NewCA(t, "ktd test CA")
	cert := ca.Issue(t, "ktd", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	certPath, keyPath = cert.WriteFiles(t, dir, "ktd")
	return ca, ca.WriteFile(t, dir, "ca"), certPath, keyPath
}

func TestApplyTLS(t *testing.T) {
	dir := t.TempDir()
	_, caPath, certPath, keyPath := tlsFiles(t, dir)
	notPEM := filepath.Join(dir, "junk.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{TLSCert: missing, TLSKey: keyPath}, "missing.pem: no such file"},
		{Options{TLSCert: certPath, TLSKey: notPEM}, "-tlskey"},
		{Options{TLSCert: keyPath, TLSKey: keyPath}, "-tlscert"},
		{Options{TLSCert: certPath, TLSKey: keyPath, TLSCA: missing}, "-tlsca: open"},
		{Options{TLSCert: certPath, TLSKey: keyPath, TLSCA: notPEM}, "no PEM certificate found"},
	} {
		cfg := ktserver.DefaultConfig()
		if _, err := applyTLS(&tc.o, &cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("applyTLS(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}

	cfg := ktserver.DefaultConfig()
	o := &Options{TLSCert: certPath, TLSKey: keyPath, TLSCA: caPath, TLSClients: true, MasterTLS: true}
	if _, err := applyTLS(o, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ReplClientCAs == nil ||
		cfg.ReplTLS == nil || cfg.ReplTLS.RootCAs == nil || cfg.ReplTLS.GetClientCertificate == nil {
		t.Fatalf("applyTLS: TLS %+v, ReplTLS %+v", cfg.TLS, cfg.ReplTLS)
	}
	cfg = ktserver.DefaultConfig()
	if _, err := applyTLS(&Options{TLSCert: certPath, TLSKey: keyPath}, &cfg); err != nil || cfg.TLS.ClientAuth != tls.NoClientCert ||
		cfg.ReplClientCAs != nil || cfg.ReplTLS != nil {
		t.Fatalf("applyTLS without CA: %v, %+v", err, cfg)
	}

	// The errors reach the command line's caller.
	var out, errb bytes.Buffer
	if code := Main([]string{"-lz", "-tlscert", missing, "-tlskey", keyPath, "*"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "ktd: -tlscert "+missing) {
		t.Fatalf("Main with a missing certificate: %d %q", code, errb.String())
	}
}

// TestTLSReplicationThroughFlags runs a TLS master that requires client
// certificates of replicas and a replica dialing it with -mtls, as child
// processes: writes on the master arrive at the replica, both serve TLS,
// and a plain client gets nothing.
func TestTLSReplicationThroughFlags(t *testing.T) {
	dir := t.TempDir()
	ca, caPath, certPath, keyPath := tlsFiles(t, dir)
	tlsArgs := []string{"-tlscert", certPath, "-tlskey", keyPath, "-tlsca", caPath}
	_, maddr := startChild(t, append(tlsArgs, "-ulog", filepath.Join(dir, "ulog"), "-sid", "1", "*")...)
	_, mport, _ := net.SplitHostPort(maddr)
	_, raddr := startChild(t, append(tlsArgs, "-sid", "2", "-mhost", "127.0.0.1", "-mport", mport, "-mtls",
		"-rts", filepath.Join(dir, "replica.rts"), "*")...)

	client := &tls.Config{RootCAs: ca.Pool()} // no certificate: ordinary clients need none
	m := kttest.DialTLS(t, maddr, client)
	if r := m.RPC("set", "key", "k", "value", "over TLS"); r.Code != 200 {
		t.Fatalf("set on the master: %d %q", r.Code, r.Body)
	}
	r := kttest.DialTLS(t, raddr, client)
	kttest.WaitFor(t, 20*time.Second, "the write to reach the replica", func() bool {
		return r.RPC("get", "key", "k").TSV()["value"] == "over TLS"
	})
	if rep := r.RPC("report").TSV(); rep["repl_connected"] != "true" {
		t.Fatalf("replica report: repl_connected %q", rep["repl_connected"])
	}

	nc, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /rpc/get?key=k HTTP/1.1\r\n\r\n")
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, _ := io.ReadAll(nc); len(got) != 0 {
		t.Fatalf("plain client on the TLS port got %q", got)
	}
}

// TestTLSClientsFlag: with -tlsclients every client must present a
// certificate of -tlsca.
func TestTLSClientsFlag(t *testing.T) {
	dir := t.TempDir()
	ca, caPath, certPath, keyPath := tlsFiles(t, dir)
	_, addr := startChild(t, "-tlscert", certPath, "-tlskey", keyPath, "-tlsca", caPath, "-tlsclients", "*")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if r := kttest.DialTLS(t, addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}).RPC("echo"); r.Code != 200 {
		t.Fatalf("client with a certificate: %d", r.Code)
	}
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		return // refused in the handshake
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "GET /rpc/echo HTTP/1.1\r\n\r\n")
	if got, err := io.ReadAll(nc); len(got) != 0 || err == nil {
		t.Fatalf("client without a certificate: got %q, %v", got, err)
	}
}

// TestTLSPlainMasterAndPlainPoP is the pipeline's shape: a master that
// serves kt_fdw and other KT clients in plain TCP (-tlsplain) but replicates
// only to authenticated TLS replicas, and a PoP replica that serves its own
// clients in plain TCP while authenticating to its master with
// -mtlscert/-mtlskey/-mtlsca.
func TestTLSPlainMasterAndPlainPoP(t *testing.T) {
	dir := t.TempDir()
	ca, caPath, certPath, keyPath := tlsFiles(t, dir)
	_, maddr := startChild(t, "-tlscert", certPath, "-tlskey", keyPath, "-tlsca", caPath, "-tlsplain",
		"-ulog", filepath.Join(dir, "ulog"), "-sid", "1", "*")
	_, mport, _ := net.SplitHostPort(maddr)
	_, raddr := startChild(t, "-sid", "2", "-mhost", "127.0.0.1", "-mport", mport,
		"-mtls", "-mtlscert", certPath, "-mtlskey", keyPath, "-mtlsca", caPath,
		"-rts", filepath.Join(dir, "replica.rts"), "*")

	// Plain and TLS clients on the master's one port.
	if r := kttest.Dial(t, maddr).RPC("set", "key", "k", "value", "plain write"); r.Code != 200 {
		t.Fatalf("plain set on the master: %d %q", r.Code, r.Body)
	}
	if r := kttest.DialTLS(t, maddr, &tls.Config{RootCAs: ca.Pool()}).RPC("get", "key", "k"); r.TSV()["value"] != "plain write" {
		t.Fatalf("TLS get on the master: %d %q", r.Code, r.Body)
	}
	// The PoP serves plain clients, and got the write over mutual TLS.
	pop := kttest.Dial(t, raddr)
	kttest.WaitFor(t, 20*time.Second, "the write to reach the PoP", func() bool {
		return pop.RPC("get", "key", "k").TSV()["value"] == "plain write"
	})
	// A replication request in plain TCP is refused with KT's 0xBF.
	nc, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte{0xB1, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(nc); len(got) != 1 || got[0] != 0xBF {
		t.Fatalf("plain replication request answered % x, want bf", got)
	}
}

// servedCertCN dials addr over TLS and returns the common name of the certificate the
// server presented.
func servedCertCN(t *testing.T, addr string, ca *testcerts.CA) string {
	t.Helper()
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer nc.Close()
	return nc.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// SIGHUP reloads the certificate and key from their files: new connections get the new
// certificate, the server keeps running and serving; a broken pair on disk keeps the
// one in use.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "ktd test CA")
	certPath, keyPath := ca.Issue(t, "first", x509.ExtKeyUsageServerAuth).WriteFiles(t, dir, "server")
	logPath := filepath.Join(dir, "ktd.log")
	cmd, addr := startChild(t, "-log", logPath, "-tlscert", certPath, "-tlskey", keyPath, "*")
	if cn := servedCertCN(t, addr, ca); cn != "first" {
		t.Fatalf("served %q", cn)
	}
	kept := kttest.DialTLS(t, addr, &tls.Config{RootCAs: ca.Pool()}) // open across the reload
	if r := kept.RPC("set", "key", "k", "value", "v"); r.Code != 200 {
		t.Fatalf("set: %d", r.Code)
	}

	ca.Issue(t, "second", x509.ExtKeyUsageServerAuth).WriteFiles(t, dir, "server")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kttest.WaitFor(t, 10*time.Second, "the new certificate", func() bool { return servedCertCN(t, addr, ca) == "second" })
	if r := kept.RPC("get", "key", "k"); r.Code != 200 || r.TSV()["value"] != "v" {
		t.Fatalf("connection across the reload: %d %q", r.Code, r.Body)
	}

	// A key that does not match its certificate: the reload fails, "second" stays.
	other := ca.Issue(t, "third", x509.ExtKeyUsageServerAuth)
	otherCert, _ := other.WriteFiles(t, t.TempDir(), "other")
	pem, err := os.ReadFile(otherCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kttest.WaitFor(t, 10*time.Second, "the failed reload in the log", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "keeping the one in use")
	})
	for range 5 {
		if cn := servedCertCN(t, addr, ca); cn != "second" {
			t.Fatalf("after a failed reload the server presents %q", cn)
		}
	}
	if r := kttest.DialTLS(t, addr, &tls.Config{RootCAs: ca.Pool()}).RPC("echo"); r.Code != 200 {
		t.Fatalf("server after a failed reload: %d", r.Code)
	}
}

// ktd verify speaks TLS to TLS-only servers (-tlsclients: a client certificate too),
// in both of its modes' first step (the digest probe) and in the digest comparison.
func TestVerifyOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caPath, certPath, keyPath := tlsFiles(t, dir)
	flags := []string{"-tlscert", certPath, "-tlskey", keyPath, "-tlsca", caPath, "-tlsclients"}
	_, a := startChild(t, append(flags, "*")...)
	_, b := startChild(t, append(flags, "*")...)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	cc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}
	for _, addr := range []string{a, b} {
		c := kttest.DialTLS(t, addr, cc)
		for i := range 50 {
			if r := c.RPC("set", "key", fmt.Sprintf("k%02d", i), "value", "v"); r.Code != 200 {
				t.Fatalf("set: %d", r.Code)
			}
		}
	}
	var out, errb bytes.Buffer
	args := []string{"verify", "-tlsca", caPath, "-tlscert", certPath, "-tlskey", keyPath, a, b}
	if code := Main(args, &out, &errb); code != 0 || !strings.Contains(out.String(), "agree: 50 records") {
		t.Fatalf("verify over TLS: %d %q %q", code, out.String(), errb.String())
	}
	if r := kttest.DialTLS(t, b, cc).RPC("set", "key", "k07", "value", "other"); r.Code != 200 {
		t.Fatal("set")
	}
	out.Reset()
	if code := Main(args, &out, &errb); code != 1 || !strings.Contains(out.String(), "k07") {
		t.Fatalf("verify over TLS, one record differs: %d %q", code, out.String())
	}
	// Without TLS the servers answer nothing: an error, not "agree".
	out.Reset()
	errb.Reset()
	if code := Main([]string{"verify", "-timeout", "5s", a, b}, &out, &errb); code != 2 {
		t.Fatalf("verify in plain TCP against TLS servers: %d %q %q", code, out.String(), errb.String())
	}
	// Without a client certificate the servers refuse the handshake.
	if code := Main([]string{"verify", "-timeout", "5s", "-tlsca", caPath, a, b}, &out, &errb); code != 2 {
		t.Fatalf("verify without a client certificate: %d", code)
	}
}
