package pipeline

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// tlsFiles are the throw-away CA and master certificate of a run with
// Config.TLS, as PEM files in a directory the PostgreSQL server's user can
// read (kt_fdw reads the CA there).
type tlsFiles struct {
	dir           string
	ca, cert, key string
	client        *tls.Config // trusts the CA: for RPC and update-log clients
}

// newTLSFiles makes a CA and a certificate for the master, valid for the names
// a client may use for it (127.0.0.1, ::1, localhost, and host.docker.internal
// for PostgreSQL in a container), in a fresh directory readable by every user.
func newTLSFiles() (*tlsFiles, error) {
	dir, err := os.MkdirTemp("", "fdwtest-tls-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f := &tlsFiles{dir: dir, ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "master.crt"), key: filepath.Join(dir, "master.key")}
	if err := f.write(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pipeline: TLS files: %w", err)
	}
	return f, nil
}

func (f *tlsFiles) write() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fdwtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "fdwtest master"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "host.docker.internal"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{f.ca, "CERTIFICATE", caDER, 0o644},
		{f.cert, "CERTIFICATE", der, 0o644},
		{f.key, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	f.client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return nil
}

func (f *tlsFiles) remove() {
	if f != nil {
		os.RemoveAll(f.dir)
	}
}
