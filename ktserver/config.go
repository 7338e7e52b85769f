package ktserver

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/replication"
)

// Config configures a Server. The zero value is not valid; start from
// DefaultConfig and change what you need.
type Config struct {
	// DBs are Kyoto Tycoon database arguments ("casket.kch", "*#capsiz=1g",
	// "+", ...), ids 0..N-1 in order. Empty means one on-memory stash DB ":".
	DBs []string

	// Threads is KT's -th: the number of worker threads reported by
	// report (serv_thread_count), and the number of Lua states a script
	// (ScriptPath) is loaded into. Default 16.
	Threads int

	// Timeout is KT's -tout: the bound on each read of a request and each
	// write of a response. Idle keep-alive connections are never closed.
	// Default 30 s.
	Timeout time.Duration

	// MaxConns caps open client connections; connections beyond it are
	// closed at once. Default 4096; negative means no cap.
	MaxConns int

	// NoSync acknowledges writes before Pebble has synced them. Default
	// false: an acknowledged write survives kill -9.
	NoSync bool

	// ReadOnly is KT's -ord: every write fails with
	// "DB: 4: no permission: permission denied".
	ReadOnly bool

	// ScriptPath is KT's -scr: a Lua script whose global functions
	// play_script calls (internal/script), loaded into Threads Lua states
	// at New. A script that does not load makes New fail. "" disables
	// play_script except for ktd's transaction procedures.
	ScriptPath string

	// ScriptTimeout bounds the wall-clock time of one play_script call
	// (and of loading the script). Default 10 s; negative means none.
	ScriptTimeout time.Duration

	// ScriptMaxInstructions bounds the Lua instructions of one
	// play_script call. Default 0: no bound.
	ScriptMaxInstructions int64

	// ScriptMaxMemory bounds what one Lua state holds, in bytes. Default
	// 128 MiB; negative means none.
	ScriptMaxMemory int64

	// SID is KT's -sid, this server's id in a replication topology
	// (0..65535). Stamped on the update-log records of local writes.
	SID uint16

	// ULog is KT's -ulog: keep an update log so that slaves can replicate
	// from this server. ktd keeps the log inside each database's Pebble
	// store, written in the same batch as the data; ULogDir is only
	// reported (ulog_list).
	ULog    bool
	ULogDir string

	// ULogLimit is KT's -ulim: when a database's update log grows past
	// this many bytes, its oldest records are trimmed. Zero means 256 MiB;
	// negative means no limit.
	ULogLimit int64

	// ULogRetention, when positive, also trims records older than this.
	ULogRetention time.Duration

	// ULogCheckInterval is how often the update log's bounds are enforced.
	// Default 10 s.
	ULogCheckInterval time.Duration

	// MasterAddr is KT's -mhost/-mport ("host:port"): replicate from that
	// master. Requires RTSPath.
	MasterAddr string

	// RTSPath is KT's -rts, the replication timestamp file.
	RTSPath string

	// ReplInterval is KT's -riv replication throttle. Default 0 (none).
	ReplInterval float64

	// ReplBootstrap makes a replica without a position start from a
	// snapshot of its master rather than from the master's whole log. A
	// master that sends none (an unmodified KT) is copied over its RPC
	// instead, within ReplKTBoot's bounds (replication.KTBootstrap).
	ReplBootstrap bool
	// ReplKTBoot bounds that copy: Conns (connections to the master,
	// default 2), Page (keys per page, default 10 000), Batch (keys per
	// get_bulk, default 1 000) and Rate (records per second, default 0:
	// no bound). Its other fields are ignored.
	ReplKTBoot replication.KTBootstrap

	// ReplVerifyInterval is how often replication compares databases
	// online (ktd to ktd, checksummed sessions): as a master, how often it
	// sends each replica that asks a digest of each database; as a
	// replica, whether it asks (any value but negative). A replica found
	// diverged re-bootstraps from its master, unless its update log holds
	// writes made on it (dual master), when it only reports. Default 60 s;
	// negative: never.
	ReplVerifyInterval time.Duration

	// CommandDir is KT's -cmd: where synchronize finds its commands.
	// Default ".".
	CommandDir string

	// SyncInterval is KT's -asi: synchronize every database this often
	// (meaningful with NoSync). Zero means never.
	SyncInterval time.Duration

	// SyncHard is KT's -ash: make the periodic synchronization physical.
	SyncHard bool

	// SnapshotDir is KT's -bgs: every SnapshotInterval (and at Close) a
	// snapshot of every database is written there, and at start-up an
	// on-memory database, or a file database whose directory is missing or
	// empty, is restored from the snapshot found there. "" means off.
	SnapshotDir string

	// SnapshotInterval is KT's -bgsi. Zero means 180 s; negative means
	// snapshots only at Close and on request.
	SnapshotInterval time.Duration

	// SnapshotRoot is where the snapshot procedure may write; "" means
	// SnapshotDir. With neither, the procedure is refused.
	SnapshotRoot string

	// TxIdleTimeout closes a connection whose transaction (play_script
	// ktfdwbegintransaction) has seen no request for this long, which
	// aborts the transaction. Default 60 s; negative means never.
	TxIdleTimeout time.Duration

	// Limits against hostile clients (limits.go). Zero means the default;
	// negative means none (the protocols' own 256 MiB bounds remain).
	//
	// MaxKeySize bounds one key (RPC, REST, binary). Default 1 MiB.
	// MaxValueSize bounds one value. Default 256 MiB.
	// MaxBodySize bounds an HTTP request body (413, as KT) and the keys and
	// values of one binary frame together. Default 256 MiB (KT's).
	// MaxRecords bounds the records of one bulk request (and the arguments
	// of a play_script). Default 1 Mi.
	// MaxInflightBytes bounds the request bytes being read and served by
	// all connections together; a request that does not fit within a
	// moment is refused (503, binary 0xBF) and its connection closed.
	// Default 256 MiB.
	MaxKeySize       int64
	MaxValueSize     int64
	MaxBodySize      int64
	MaxRecords       int64
	MaxInflightBytes int64

	// IdleTimeout closes a keep-alive connection that has waited this long
	// for its next request. Default 0: never, as in KT.
	IdleTimeout time.Duration

	// TLS, when set, makes every connection on the port TLS, whatever
	// protocol it then speaks (RPC, REST, binary, replication). It must
	// carry a certificate (Certificates, GetCertificate or
	// GetConfigForClient). Versions below TLS 1.2 are never negotiated. A
	// connection whose handshake fails or does not finish within Timeout
	// (a plain-TCP client, say) is closed without an answer and counted
	// in ktd_tls_handshake_failures_total. Default nil: plain TCP, as KT.
	TLS *tls.Config

	// ReplClientCAs, when set, restricts replication sessions (binary
	// 0xB1 requests) to TLS clients that presented a certificate which
	// verifies against this pool for client authentication; any other
	// replication request is answered 0xBF and closed, as KT refuses one,
	// logged and counted in ktd_repl_refused_total. Requires TLS. Unless
	// TLS already asks for client certificates, it is made to verify one
	// when given (tls.VerifyClientCertIfGiven, ClientCAs defaulting to this
	// pool), so clients without a certificate are still served.
	ReplClientCAs *x509.CertPool

	// TLSAllowPlain, with TLS, also serves plain-TCP clients on the same
	// port (KT clients, kt_fdw): a connection whose first byte starts a TLS
	// handshake is TLS, any other is served as plain KT. Replication
	// sessions still require an authenticated TLS client when
	// ReplClientCAs is set.
	TLSAllowPlain bool

	// ReplTLS, when set, is the TLS configuration this server's replica
	// (MasterAddr, tune_replication) dials its master with: RootCAs to
	// verify the master, Certificates for the client certificate a master
	// with ReplClientCAs requires. ServerName defaults to the master's
	// host. Default nil: plain TCP.
	ReplTLS *tls.Config

	// CacheSize is the cache of each file database, in bytes: Pebble's block
	// cache and, an eighth of it, the row cache of records recently read;
	// zero means the store's default (64 MiB).
	CacheSize int64

	// ServerHeader is the value of the Server response header.
	// Default "KyotoTycoon/0.9.56".
	ServerHeader string

	// Now is the clock for expiry and report; nil means time.Now.
	Now func() time.Time

	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger

	// Registry, when set, receives the server's Prometheus metrics.
	Registry *prometheus.Registry
}

// DefaultConfig returns the configuration ktserver uses when started with
// no flags: one ":" database, 16 threads, a 30 s timeout, synced writes.
func DefaultConfig() Config {
	return Config{
		Threads:         16,
		Timeout:         30 * time.Second,
		MaxConns:        4096,
		TxIdleTimeout:   60 * time.Second,
		ServerHeader:    "KyotoTycoon/0.9.56",
		ScriptTimeout:   10 * time.Second,
		ScriptMaxMemory: 128 << 20,
	}
}
