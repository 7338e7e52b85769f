// Package cli turns ktserver's command line (KT 0.9.56's, plus a few ktd
// extensions) into a ktserver.Config and runs the server until a signal.
package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Options is the parsed command line.
type Options struct {
	Host       string        // -host: bind address; default 127.0.0.1 (KT binds every interface)
	Port       int           // -port: default 1978
	Timeout    time.Duration // -tout: per read/write socket timeout
	Threads    int           // -th
	LogPath    string        // -log: "" or "-" means stdout
	LogLevel   slog.Level    // -li/-ls/-le; LevelNone for -lz
	ULogDir    string        // -ulog
	ULogLimit  int64         // -ulim (atoix)
	ULogSync   float64       // -uasi seconds
	SID        int           // -sid; -1 when unset
	ReadOnly   bool          // -ord
	SyncEvery  float64       // -asi seconds
	SyncHard   bool          // -ash
	Snapshot   string        // -bgs
	SnapshotIV float64       // -bgsi seconds (KT's default 180)
	Daemon     bool          // -dmn
	PIDPath    string        // -pid
	CommandDir string        // -cmd
	ScriptPath string        // -scr
	MasterHost string        // -mhost
	MasterPort int           // -mport
	RTSPath    string        // -rts
	ReplIV     float64       // -riv
	DBs        []string      // database arguments
	Version    bool          // --version

	// ktd extensions.
	MetricsAddr string        // -metrics host:port: serve Prometheus metrics there
	NoSync      bool          // -nosync: acknowledge writes before they are synced
	MaxConns    int           // -maxconn: cap on open client connections
	Bootstrap   bool          // -bootstrap: a new replica starts from a snapshot of its master
	ReplVerify  time.Duration // -rverify: online replica verification interval (0 = default, negative = never)
	ULogAge     time.Duration // -ulogage: drop update-log records older than this
	TxIdle      time.Duration // -txidle: abort a connection transaction idle this long (0 = default)
	MaxKey      int64         // -maxkey: bound on one key (0 = default, negative = none)
	MaxValue    int64         // -maxval: bound on one value
	MaxBody     int64         // -maxbody: bound on a request body or binary frame
	MaxRecords  int64         // -maxrec: bound on the records of one bulk request
	MaxInflight int64         // -maxinflight: budget of request bytes in flight
	Idle        time.Duration // -idle: close keep-alive connections idle this long (0 = never)

	// Bootstrap from a KT master (ktboot.go).
	BootRate  int // -bsrate: records copied per second (0 = no bound)
	BootConns int // -bsconn: connections to the master (0 = default)
	BootPage  int // -bspage: keys per page (0 = default)

	// TLS (tls.go).
	TLSCert    string // -tlscert: serve TLS on the port with this PEM certificate (chain)
	TLSKey     string // -tlskey: its PEM private key
	TLSCA      string // -tlsca: PEM CA bundle: verifies client certificates (replicas must present one) and, with -mtls, the master
	TLSClients bool   // -tlsclients: require a verified client certificate from every client
	TLSPlain   bool   // -tlsplain: also serve plain-TCP clients on the TLS port
	MasterTLS  bool   // -mtls: dial the master over TLS, presenting -tlscert/-tlskey
	// The replica link's own certificate and CA, when it must differ from
	// the port's (a PoP serving plain TCP that authenticates to its master).
	MasterTLSCert string // -mtlscert (default -tlscert)
	MasterTLSKey  string // -mtlskey (default -tlskey)
	MasterTLSCA   string // -mtlsca (default -tlsca)

	// Notices are one-line messages about flags that are accepted but have
	// no effect in ktd.
	Notices []string
}

// LevelSystem is KT's SYSTEM log kind (lifecycle messages), between INFO
// and ERROR. LevelNone silences the log (-lz).
const (
	LevelSystem = slog.Level(2)
	LevelNone   = slog.Level(math.MaxInt32)
)

// ErrUsage means the command line was malformed; the caller prints Usage.
var ErrUsage = errors.New("invalid command line")

// Usage is ktserver's usage text with ktd's extensions.
const Usage = `usage: ktd [-host str] [-port num] [-tout num] [-th num] [-log file] [-li|-ls|-le|-lz]
           [-ulog path] [-ulim num] [-uasi num] [-sid num] [-ord] [-oat|-oas|-onl|-otl|-onr]
           [-asi num] [-ash] [-bgs path] [-bgsi num] [-bgsc str] [-dmn] [-pid file]
           [-cmd path] [-scr file] [-mhost str] [-mport num] [-rts file] [-riv num]
           [-plsv file] [-plex str] [-pldb file]
           [-metrics host:port] [-nosync] [-maxconn num] [-bootstrap] [-rverify sec]
           [-bsrate num] [-bsconn num] [-bspage num]
           [-ulogage sec] [-txidle sec] [-maxkey num] [-maxval num] [-maxbody num] [-maxrec num]
           [-maxinflight num] [-idle sec] [-tlscert file -tlskey file] [-tlsca file]
           [-tlsclients] [-tlsplain] [-mtls [-mtlscert file -mtlskey file] [-mtlsca file]]
           [db...]
       ktd --version
`

// Parse parses KT's command line. Options are recognised only before the
// first database argument or "--", as in KT.
func Parse(args []string) (*Options, error) {
	o := &Options{
		Port:       1978,
		Timeout:    30 * time.Second,
		Threads:    16,
		LogLevel:   slog.LevelDebug,
		ULogLimit:  256 << 20,
		SID:        -1,
		CommandDir: ".",
		MasterPort: 1978,
		ReplIV:     0, // KT throttles by default (0.04); ktd does not
	}
	if len(args) > 0 && args[0] == "--version" {
		o.Version = true
		return o, nil
	}
	i := 0
	next := func(name string) (string, error) {
		if i+1 >= len(args) {
			return "", fmt.Errorf("%w: %s needs a value", ErrUsage, name)
		}
		i++
		return args[i], nil
	}
	notice := func(name, why string) {
		o.Notices = append(o.Notices, fmt.Sprintf("%s is accepted and ignored: %s", name, why))
	}
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		var v string
		var err error
		switch a {
		case "-host", "-port", "-tout", "-th", "-log", "-ulog", "-ulim", "-uasi", "-sid",
			"-asi", "-bgs", "-bgsi", "-bgsc", "-pid", "-cmd", "-scr", "-mhost", "-mport",
			"-rts", "-riv", "-plsv", "-plex", "-pldb", "-metrics", "-maxconn", "-ulogage", "-txidle", "-rverify",
			"-maxkey", "-maxval", "-maxbody", "-maxrec", "-maxinflight", "-idle",
			"-tlscert", "-tlskey", "-tlsca", "-mtlscert", "-mtlskey", "-mtlsca",
			"-ca", "-pk", "-cert", "-rpk", "-rcert", "-auxhost", "-auxport":
			if v, err = next(a); err != nil {
				return nil, err
			}
		}
		switch a {
		case "-host":
			o.Host = v
		case "-port":
			o.Port = int(ktproto.Atoix(v))
		case "-tout":
			o.Timeout = time.Duration(ktproto.Atof(v) * float64(time.Second))
		case "-th":
			o.Threads = int(ktproto.Atoix(v))
		case "-log":
			o.LogPath = v
		case "-li":
			o.LogLevel = slog.LevelInfo
		case "-ls":
			o.LogLevel = LevelSystem
		case "-le":
			o.LogLevel = slog.LevelError
		case "-lz":
			o.LogLevel = LevelNone
		case "-ulog":
			o.ULogDir = v
		case "-ulim":
			o.ULogLimit = ktproto.Atoix(v)
		case "-uasi":
			o.ULogSync = ktproto.Atof(v)
		case "-sid":
			o.SID = int(ktproto.Atoix(v))
		case "-ord":
			o.ReadOnly = true
		case "-oat":
			notice(a, "every ktd write is atomic already")
		case "-oas":
			notice(a, "ktd syncs every write unless -nosync is given")
		case "-onl", "-otl":
			notice(a, "Pebble locks its directory itself")
		case "-onr":
			notice(a, "Pebble recovers from its write-ahead log; there is no auto-repair to turn off")
		case "-asi":
			o.SyncEvery = ktproto.Atof(v)
		case "-ash":
			o.SyncHard = true
		case "-bgs":
			o.Snapshot = v
		case "-bgsi":
			o.SnapshotIV = ktproto.Atof(v)
		case "-bgsc":
			notice(a, "snapshots are Pebble directories, which Pebble compresses already")
		case "-dmn":
			o.Daemon = true
		case "-pid":
			o.PIDPath = v
		case "-cmd":
			o.CommandDir = v
		case "-scr":
			o.ScriptPath = v
		case "-mhost":
			o.MasterHost = v
		case "-mport":
			o.MasterPort = int(ktproto.Atoix(v))
		case "-rts":
			o.RTSPath = v
		case "-riv":
			o.ReplIV = ktproto.Atof(v)
		case "-plsv", "-plex", "-pldb":
			notice(a, "ktd loads no plug-ins")
		case "-sec", "-msec", "-ca", "-pk", "-cert", "-rpk", "-rcert", "-auxhost", "-auxport":
			notice(a, "a Cloudflare-fork option; ktd's TLS flags are -tlscert, -tlskey, -tlsca, -tlsclients and -mtls")
		case "-metrics":
			o.MetricsAddr = v
		case "-nosync":
			o.NoSync = true
		case "-maxconn":
			o.MaxConns = int(ktproto.Atoix(v))
		case "-bootstrap":
			o.Bootstrap = true
		case "-rverify":
			o.ReplVerify = time.Duration(ktproto.Atof(v) * float64(time.Second))
			if o.ReplVerify <= 0 {
				o.ReplVerify = -1 // 0 means never
			}
		case "-ulogage":
			o.ULogAge = time.Duration(ktproto.Atof(v) * float64(time.Second))
		case "-txidle":
			o.TxIdle = time.Duration(ktproto.Atof(v) * float64(time.Second))
			if o.TxIdle == 0 {
				o.TxIdle = -1 // 0 means never, as for -tout-like flags
			}
		case "-maxkey":
			o.MaxKey = ktproto.Atoix(v)
		case "-maxval":
			o.MaxValue = ktproto.Atoix(v)
		case "-maxbody":
			o.MaxBody = ktproto.Atoix(v)
		case "-maxrec":
			o.MaxRecords = ktproto.Atoix(v)
		case "-maxinflight":
			o.MaxInflight = ktproto.Atoix(v)
		case "-idle":
			o.Idle = time.Duration(ktproto.Atof(v) * float64(time.Second))
		case "-tlscert":
			o.TLSCert = v
		case "-tlskey":
			o.TLSKey = v
		case "-tlsca":
			o.TLSCA = v
		case "-tlsclients":
			o.TLSClients = true
		case "-mtls":
			o.MasterTLS = true
		case "-tlsplain":
			o.TLSPlain = true
		case "-mtlscert":
			o.MasterTLSCert = v
		case "-mtlskey":
			o.MasterTLSKey = v
		case "-mtlsca":
			o.MasterTLSCA = v
		default:
			if ok, err := o.parseBootFlag(a, next); ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("%w: unknown option %s", ErrUsage, a)
		}
	}
	o.DBs = append(o.DBs, args[i:]...)
	return o, o.validate()
}

// validate applies KT's start-up checks, with KT's messages.
func (o *Options) validate() error {
	switch {
	case o.Port < 1 || o.Port > 65535:
		return fmt.Errorf("%w: -port must be in 1..65535", ErrUsage)
	case o.Timeout <= 0:
		return fmt.Errorf("%w: -tout must be positive", ErrUsage)
	case o.Threads < 1:
		return fmt.Errorf("%w: -th must be at least 1", ErrUsage)
	case o.ULogDir != "" && o.SID < 0:
		return errors.New("update log requires the server ID")
	case o.MasterHost != "" && o.SID < 0:
		return errors.New("replication requires the server ID")
	case o.MasterHost != "" && o.RTSPath == "":
		return errors.New("replication requires the replication time stamp file")
	case o.SID > 65535:
		return fmt.Errorf("%w: -sid must be in 0..65535", ErrUsage)
	case len(o.DBs) > 200:
		return errors.New("too much databases")
	}
	if err := o.validateTLS(); err != nil {
		return err
	}
	if o.Daemon {
		for _, p := range append([]string{o.LogPath, o.ULogDir, o.PIDPath, o.ScriptPath, o.RTSPath, o.Snapshot, o.TLSCert, o.TLSKey, o.TLSCA, o.MasterTLSCert, o.MasterTLSKey, o.MasterTLSCA}, dbPaths(o.DBs)...) {
			if p != "" && p != "-" && !filepath.IsAbs(p) {
				return fmt.Errorf("%s: a daemon can accept absolute path only", p)
			}
		}
	}
	return nil
}

// dbPaths returns the file paths among database arguments (on-memory
// names like "*" or "+" are not paths).
func dbPaths(dbs []string) []string {
	var out []string
	for _, db := range dbs {
		p := db
		for i := 0; i < len(p); i++ {
			if p[i] == '#' {
				p = p[:i]
				break
			}
		}
		switch p {
		case "", ":", "*", "%", "-", "+":
			continue
		}
		out = append(out, p)
	}
	return out
}

// Addr is the listen address the options name.
func (o *Options) Addr() string {
	return netJoin(o.Host, o.Port)
}

func netJoin(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return host + ":" + strconv.Itoa(port)
}
