package ktserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"
)

// prepareTLS checks the TLS settings and fills in their defaults, on
// clones: the caller's tls.Configs are never modified.
func (c *Config) prepareTLS() error {
	if c.ReplClientCAs != nil && c.TLS == nil {
		return errors.New("ktserver: ReplClientCAs requires TLS: replicas can only be authenticated over TLS")
	}
	if c.TLS != nil {
		t := c.TLS.Clone()
		if len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
			return errors.New("ktserver: the TLS configuration has no certificate")
		}
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
		if c.ReplClientCAs != nil && t.ClientAuth == tls.NoClientCert {
			t.ClientAuth = tls.VerifyClientCertIfGiven
			if t.ClientCAs == nil {
				t.ClientCAs = c.ReplClientCAs
			}
		}
		c.TLS = t
	}
	if c.ReplTLS != nil {
		t := c.ReplTLS.Clone()
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
		c.ReplTLS = t
	}
	return nil
}

// wrapTLS makes nc a TLS server connection when the server serves TLS.
// The handshake happens later, on the connection's goroutine (handshake).
func (s *Server) wrapTLS(nc net.Conn) net.Conn {
	if s.cfg.TLS == nil || s.cfg.TLSAllowPlain {
		return nc // with TLSAllowPlain, sniffTLS decides
	}
	return tls.Server(nc, s.cfg.TLS)
}

// tlsRecordHandshake is the first byte of every TLS connection (a
// handshake record); no KT request starts with it.
const tlsRecordHandshake = 0x16

// sniffTLS (Config.TLSAllowPlain) waits for the connection's first byte, as
// long as an idle keep-alive connection may wait, and makes the connection a
// TLS server connection when the byte starts a TLS handshake; any other
// byte leaves it plain. The byte is not lost either way. It reports whether
// to go on.
func (c *conn) sniffTLS() bool {
	if !c.setReadDeadline(c.waitDeadline()) {
		return false
	}
	var b [1]byte
	if _, err := io.ReadFull(c.nc, b[:]); err != nil {
		c.idleClosed(err)
		return false
	}
	pc := &prefixConn{Conn: c.nc, first: b[0], has: true}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	if b[0] == tlsRecordHandshake {
		c.nc = tls.Server(pc, c.s.cfg.TLS)
	} else {
		c.nc = pc
	}
	return true
}

// prefixConn is a connection whose first byte has already been read.
type prefixConn struct {
	net.Conn
	first byte
	has   bool
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if p.has && len(b) > 0 {
		b[0], p.has = p.first, false
		return 1, nil
	}
	return p.Conn.Read(b)
}

// handshake completes the TLS handshake of a TLS connection within -tout;
// on a plain connection it does nothing. It reports whether to go on; a
// failed handshake is logged and counted, and the connection is then
// closed by the caller without a word.
func (c *conn) handshake() bool {
	if c.s.cfg.TLS != nil && c.s.cfg.TLSAllowPlain && !c.sniffTLS() {
		return false
	}
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	// A client that connects and never completes the handshake is cut off
	// like one that trickles a request.
	tc.SetDeadline(time.Now().Add(c.s.cfg.Timeout))
	c.mu.Unlock()
	if err := tc.Handshake(); err != nil {
		if c.isClosing() {
			return false
		}
		c.s.metrics.tlsFailures.Inc()
		// Port scanners, plain-TCP clients and slow handshakes are routine;
		// a TLS client that failed (a certificate, a version) is worth a
		// look.
		level := slog.LevelInfo
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) || errors.Is(err, io.EOF) || isTimeout(err) {
			level = slog.LevelDebug
		}
		c.s.logger.Log(context.Background(), level, "TLS handshake failed; closing", "remote", c.remote(), "err", err)
		return false
	}
	tc.SetWriteDeadline(time.Time{}) // flush sets its own; the read deadline is set by serve
	return true
}

// replRefusal says why the connection may not open a replication session,
// with a short reason for the metric label; nil when it may. Only with
// Config.ReplClientCAs is anything refused.
func (c *conn) replRefusal() (reason string, err error) {
	pool := c.s.cfg.ReplClientCAs
	if pool == nil {
		return "", nil
	}
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return "no_tls", errors.New("the connection is not TLS")
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "no_cert", errors.New("the client presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range st.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	// Real time, not Config.Now: certificate validity is about the world.
	if _, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "untrusted", err
	}
	return "", nil
}
