// Package tlsfiles makes the throw-away certificates of a harness run against
// TLS-only servers (fdwtest -tls, popsim -tls): a CA and a server certificate
// for the names a client may use, as PEM files readable by every user (the
// PostgreSQL server reads the CA for kt_fdw), and a client configuration that
// trusts the CA.
package tlsfiles

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

// Files are a CA and a server certificate with its key, as PEM files.
type Files struct {
	Dir           string
	CA, Cert, Key string      // paths
	Client        *tls.Config // trusts the CA: for RPC and update-log clients
}

// New makes a CA and a server certificate valid for the names a client may use
// (127.0.0.1, ::1, localhost, and host.docker.internal for PostgreSQL in a
// container), in a fresh directory readable by every user; Remove deletes it.
func New() (*Files, error) {
	dir, err := os.MkdirTemp("", "fdwtest-tls-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f := &Files{Dir: dir, CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key")}
	if err := f.write(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("tlsfiles: %w", err)
	}
	return f, nil
}

func (f *Files) write() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "harness CA"},
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
		Subject:      pkix.Name{CommonName: "harness server"},
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
		{f.CA, "CERTIFICATE", caDER, 0o644},
		{f.Cert, "CERTIFICATE", der, 0o644},
		{f.Key, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	f.Client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return nil
}

// Remove deletes the files (nil: nothing).
func (f *Files) Remove() {
	if f != nil {
		os.RemoveAll(f.Dir)
	}
}
