package fdwbridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/testcerts"
	"github.com/ktdproject/ktd/ktserver"
)

// tlsKT starts a ktd that speaks TLS only, with the certificate cert, requiring
// client certificates of ca when clientCA is set. It returns its port.
func tlsKT(t *testing.T, cert *testcerts.Cert, clientCA *testcerts.CA) int {
	t.Helper()
	cfg := ktserver.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		cfg.TLS.ClientCAs = clientCA.Pool()
		cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// readableDir is a directory the PostgreSQL server's user can read (it runs as
// postgres when the tests run as root), removed when the test ends.
func readableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ktfdw-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kt_fdw reaches a TLS-only KT server with sslmode: verified against sslrootcert
// (chain and name), unverified with require, presenting sslcert/sslkey to a server
// that demands a client certificate; a wrong CA, a wrong name, plain TCP and a
// missing client certificate are refused with clear errors.
func TestKTFDW_TLS(t *testing.T) {
	pg := sharedPostgres(t)
	if pg.Mode != ModeLocal {
		t.Skip("the TLS ktd listens on the loopback interface, which a container cannot reach")
	}
	installExtension(t, pg)
	conn := schemaConn(t, pg)
	ctx := testCtx(t, 2*time.Minute)
	dir := readableDir(t)
	ca := testcerts.NewCA(t, "kt_fdw test CA")
	other := testcerts.NewCA(t, "another CA")
	caPath := ca.WriteFile(t, dir, "ca")
	otherPath := other.WriteFile(t, dir, "other")
	clientCert, clientKey := ca.Issue(t, "kt_fdw", x509.ExtKeyUsageClientAuth).WriteFiles(t, dir, "client")
	if err := os.Chmod(clientKey, 0o644); err != nil { // a test key, for the postgres user
		t.Fatal(err)
	}
	serverCert := ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth) // SANs 127.0.0.1, ::1, localhost
	port := tlsKT(t, serverCert, nil)
	mtlsPort := tlsKT(t, serverCert, ca)

	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS kt_fdw"); err != nil {
		t.Fatal(err)
	}
	n := 0
	try := func(host string, port int, opts string) error {
		n++
		server := fmt.Sprintf("tls_kt_%d", n)
		for _, sql := range []string{
			fmt.Sprintf("CREATE SERVER %s FOREIGN DATA WRAPPER kt_fdw OPTIONS (host '%s', port '%d', timeout '10'%s)", server, host, port, opts),
			"CREATE USER MAPPING FOR PUBLIC SERVER " + server,
			fmt.Sprintf("CREATE FOREIGN TABLE ft_%d (key text, value text) SERVER %s", n, server),
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO ft_%d VALUES ('k%d', 'v')", n, n)); err != nil {
			return err
		}
		var v string
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT value FROM ft_%d WHERE key = 'k%d'", n, n)).Scan(&v); err != nil {
			return err
		}
		if v != "v" {
			t.Fatalf("read back %q", v)
		}
		return nil
	}

	for _, tc := range []struct {
		name, host string
		port       int
		opts       string
		wantErr    string // "" = works
	}{
		{"verify-full", "127.0.0.1", port, ", sslmode 'verify-full', sslrootcert '" + caPath + "'", ""},
		{"verify-full by name", "localhost", port, ", sslmode 'verify-full', sslrootcert '" + caPath + "'", ""},
		{"verify-ca", "127.0.0.1", port, ", sslmode 'verify-ca', sslrootcert '" + caPath + "'", ""},
		{"require", "127.0.0.1", port, ", sslmode 'require'", ""},
		{"client certificate", "127.0.0.1", mtlsPort, ", sslmode 'verify-full', sslrootcert '" + caPath + "', sslcert '" + clientCert + "', sslkey '" + clientKey + "'", ""},
		{"wrong CA", "127.0.0.1", port, ", sslmode 'verify-full', sslrootcert '" + otherPath + "'", "certificate verify failed"},
		{"plain TCP to a TLS-only server", "127.0.0.1", port, "", "KT server"},
		{"no client certificate", "127.0.0.1", mtlsPort, ", sslmode 'verify-full', sslrootcert '" + caPath + "'", "KT server"},
		{"certificate without key", "127.0.0.1", port, ", sslmode 'require', sslcert '" + clientCert + "'", "go together"},
	} {
		err := try(tc.host, tc.port, tc.opts)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("%s: worked, want an error containing %q", tc.name, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}

	// The validator refuses what cannot work.
	for _, opts := range []string{"sslmode 'prefer'", "sslrootcert 'ca.crt'", "sslkey 'relative.key'"} {
		if _, err := conn.Exec(ctx, "CREATE SERVER bad_tls FOREIGN DATA WRAPPER kt_fdw OPTIONS ("+opts+")"); err == nil {
			t.Errorf("CREATE SERVER with %s worked", opts)
			conn.Exec(ctx, "DROP SERVER bad_tls")
		}
	}
}
