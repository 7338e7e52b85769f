package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

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
func applyTLS(o *Options, cfg *ktserver.Config) error {
	certs, err := loadCert("-tlscert", o.TLSCert, "-tlskey", o.TLSKey)
	if err != nil {
		return err
	}
	pool, err := loadCA("-tlsca", o.TLSCA)
	if err != nil {
		return err
	}
	cfg.TLSAllowPlain = o.TLSPlain
	if certs != nil {
		cfg.TLS = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
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
		mcerts, mpool := certs, pool
		if o.MasterTLSCert != "" {
			if mcerts, err = loadCert("-mtlscert", o.MasterTLSCert, "-mtlskey", o.MasterTLSKey); err != nil {
				return err
			}
		}
		if o.MasterTLSCA != "" {
			if mpool, err = loadCA("-mtlsca", o.MasterTLSCA); err != nil {
				return err
			}
		}
		cfg.ReplTLS = &tls.Config{RootCAs: mpool, Certificates: mcerts, MinVersion: tls.VersionTLS12}
	}
	return nil
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
