package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ktdproject/ktd/ktserver"
)

// validateTLS checks that the TLS flags make sense together.
func (o *Options) validateTLS() error {
	switch {
	case o.TLSCert != "" && o.TLSKey == "":
		return fmt.Errorf("%w: -tlscert needs -tlskey", ErrUsage)
	case o.TLSKey != "" && o.TLSCert == "":
		return fmt.Errorf("%w: -tlskey needs -tlscert", ErrUsage)
	case o.TLSClients && o.TLSCert == "":
		return fmt.Errorf("%w: -tlsclients needs -tlscert and -tlskey", ErrUsage)
	case o.TLSClients && o.TLSCA == "":
		return fmt.Errorf("%w: -tlsclients needs -tlsca to verify client certificates with", ErrUsage)
	case o.MasterTLS && o.MasterHost == "":
		return fmt.Errorf("%w: -mtls needs -mhost", ErrUsage)
	case o.TLSPlain && o.TLSCert == "":
		return fmt.Errorf("%w: -tlsplain needs -tlscert and -tlskey", ErrUsage)
	case (o.MasterTLSCert != "") != (o.MasterTLSKey != ""):
		return fmt.Errorf("%w: -mtlscert and -mtlskey go together", ErrUsage)
	case (o.MasterTLSCert != "" || o.MasterTLSCA != "") && !o.MasterTLS:
		return fmt.Errorf("%w: -mtlscert, -mtlskey and -mtlsca need -mtls", ErrUsage)
	case o.TLSCA != "" && o.TLSCert == "" && !o.MasterTLS:
		return fmt.Errorf("%w: -tlsca needs -tlscert and -tlskey (to serve TLS) or -mtls (to dial the master over TLS)", ErrUsage)
	}
	return nil
}

// applyTLS loads the certificate files the TLS flags name and sets the
// Config's TLS fields:
//
//   - -tlscert/-tlskey: cfg.TLS serves TLS with that certificate.
//   - -tlsca with them: client certificates are verified against the CAs
//     when given (required of every client with -tlsclients), and
//     replication sessions require one (cfg.ReplClientCAs).
//   - -tlsplain: plain-TCP clients are served on the TLS port too
//     (cfg.TLSAllowPlain).
//   - -mtls: cfg.ReplTLS dials the master over TLS, verifying it against
//     -mtlsca or -tlsca (the system roots without either) and presenting
//     -mtlscert/-mtlskey or -tlscert/-tlskey when given.
//
// The certificates are served through reloaders (returned), so that SIGHUP can
// replace them without a restart; the CA bundles are read once.
func applyTLS(o *Options, cfg *ktserver.Config) ([]*certReloader, error) {
	var reloaders []*certReloader
	certs, err := loadCert("-tlscert", o.TLSCert, "-tlskey", o.TLSKey)
	if err != nil {
		return nil, err
	}
	pool, err := loadCA("-tlsca", o.TLSCA)
	if err != nil {
		return nil, err
	}
	cfg.TLSAllowPlain = o.TLSPlain
	if certs != nil {
		r := newCertReloader("-tlscert", o.TLSCert, "-tlskey", o.TLSKey, certs)
		reloaders = append(reloaders, r)
		cfg.TLS = &tls.Config{GetCertificate: r.serverCert, MinVersion: tls.VersionTLS12}
		if pool != nil {
			cfg.TLS.ClientCAs = pool
			cfg.TLS.ClientAuth = tls.VerifyClientCertIfGiven
			if o.TLSClients {
				cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
			}
			cfg.ReplClientCAs = pool
		}
	}
	if o.MasterTLS {
		mpool := pool
		if o.MasterTLSCA != "" {
			if mpool, err = loadCA("-mtlsca", o.MasterTLSCA); err != nil {
				return nil, err
			}
		}
		cfg.ReplTLS = &tls.Config{RootCAs: mpool, MinVersion: tls.VersionTLS12}
		var mr *certReloader
		switch {
		case o.MasterTLSCert != "":
			mcerts, err := loadCert("-mtlscert", o.MasterTLSCert, "-mtlskey", o.MasterTLSKey)
			if err != nil {
				return nil, err
			}
			mr = newCertReloader("-mtlscert", o.MasterTLSCert, "-mtlskey", o.MasterTLSKey, mcerts)
			reloaders = append(reloaders, mr)
		case certs != nil:
			mr = reloaders[0] // the server's own certificate, reloaded with it
		}
		if mr != nil {
			cfg.ReplTLS.GetClientCertificate = mr.clientCert
		}
	}
	return reloaders, nil
}

// certReloader serves a certificate and key pair read from files, and reads them
// again on Reload (SIGHUP) without interrupting anything: handshakes in progress keep
// the pair they started with, later ones get the new one.
type certReloader struct {
	certFlag, certPath, keyFlag, keyPath string
	cur                                  atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFlag, certPath, keyFlag, keyPath string, loaded []tls.Certificate) *certReloader {
	r := &certReloader{certFlag: certFlag, certPath: certPath, keyFlag: keyFlag, keyPath: keyPath}
	r.cur.Store(&loaded[0])
	return r
}

// Reload reads the files again. On an error (a missing file, a key that does not
// match) the certificate in use stays, and the error says which files.
func (r *certReloader) Reload() error {
	certs, err := loadCert(r.certFlag, r.certPath, r.keyFlag, r.keyPath)
	if err != nil {
		return err
	}
	r.cur.Store(&certs[0])
	return nil
}

// Leaf returns the certificate in use, parsed.
func (r *certReloader) Leaf() (*x509.Certificate, error) {
	c := r.cur.Load()
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

func (r *certReloader) serverCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

func (r *certReloader) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// loadCert loads a certificate and key pair named by flags certFlag and
// keyFlag; nil without a certificate.
func loadCert(certFlag, cert, keyFlag, key string) ([]tls.Certificate, error) {
	if cert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s %s / %s %s: %w", certFlag, cert, keyFlag, key, err)
	}
	return []tls.Certificate{c}, nil
}

// loadCA loads the PEM CA bundle named by flag; nil without a file.
func loadCA(flag, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate found", flag, path)
	}
	return pool, nil
}
