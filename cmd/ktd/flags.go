// Package cli turns ktserver's command line (KT 0.9.56's, plus a few ktd
// extensions) into a ktserver.Config and runs the server until a signal.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
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
	Help       bool          // -h, -help, --help

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
	ScriptTime  time.Duration // -scrtime: bound on one play_script call (0 = default, negative = none)
	ScriptInstr int64         // -scrinst: bound on the Lua instructions of one call (0 = none)
	ScriptMem   int64         // -scrmem: bound on what one Lua state holds (0 = default, negative = none)

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
           [-maxinflight num] [-idle sec] [-scrtime sec] [-scrinst num] [-scrmem num]
           [-tlscert file -tlskey file] [-tlsca file]
           [-tlsclients] [-tlsplain] [-mtls [-mtlscert file -mtlskey file] [-mtlsca file]]
           [db...]
       ktd --version
       ktd version
       ktd -h | --help
       ktd recover SRC DST
       ktd ulog dump|export ...
       ktd verify A B ...
       ktd import|export ...
       ktd health [host:port]
`

// Parse parses KT's command line. Options are recognised only before the
// first database argument or "--", as in KT. Numeric values must be whole
// numbers in KT's forms (numbers.go); anything else is an ErrUsage naming
// the flag. -h, -help and --help set Help.
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
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			o.Help = true
			return o, nil
		}
		f, ok := optionIndex[a]
		if !ok {
			return nil, fmt.Errorf("%w: unknown option %s", ErrUsage, a)
		}
		v := ""
		if f.arg != "" {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%w: %s needs a value", ErrUsage, a)
			}
			i++
			v = args[i]
		}
		if err := f.set(o, v); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %v", ErrUsage, a, v, err)
		}
	}
	o.DBs = append(o.DBs, args[i:]...)
	return o, o.validate()
}

// An option is one flag of the command line: its name, the placeholder of its value
// ("" for a switch), one line of help, and what it sets in Options.
type option struct {
	name, arg, help string
	set             func(o *Options, v string) error
}

// optionTable is the command line, in the order -h prints it. Flags that take numbers parse
// them strictly (numbers.go): counts and sizes in KT's atoix forms (1978, 64k, 1.5g),
// seconds as decimals (KT's atof).
var optionTable = []option{
	str("-host", "str", "listen address (default 127.0.0.1)", func(o *Options) *string { return &o.Host }),
	count("-port", "listen port, 1..65535 (default 1978)", func(o *Options, n int64) { o.Port = clampInt(n) }),
	seconds("-tout", "bound on reading one request and writing one response (default 30)", func(o *Options, d time.Duration) { o.Timeout = d }),
	decimal("-th", "num", "reported as serv_thread_count; the number of Lua states of -scr (default 16)", func(o *Options, f float64) { o.Threads = clampInt(int64(f)) }),
	str("-log", "file", "log file, appended (- or none: stdout); SIGUSR1 reopens it", func(o *Options) *string { return &o.LogPath }),
	level("-li", "log INFO and above", slog.LevelInfo),
	level("-ls", "log SYSTEM and above", LevelSystem),
	level("-le", "log ERROR only", slog.LevelError),
	level("-lz", "log nothing (default: everything, DEBUG included)", LevelNone),
	str("-ulog", "path", "keep an update log (in each database's store; needs -sid)", func(o *Options) *string { return &o.ULogDir }),
	size("-ulim", "bound on each database's update log (default 256m)", func(o *Options, n int64) { o.ULogLimit = n }),
	decimal("-uasi", "sec", "accepted: the update log is synced with its data", func(o *Options, f float64) { o.ULogSync = f }),
	count("-sid", "server id, 0..65535 (needed by -ulog and -mhost)", func(o *Options, n int64) { o.SID = clampInt(n) }),
	switchFlag("-ord", "read-only: open existing databases without writing anything", func(o *Options) { o.ReadOnly = true }),
	notice("-oat", "", "accepted: every ktd write is atomic already"),
	notice("-oas", "", "accepted: ktd syncs every write unless -nosync is given"),
	notice("-onl", "", "accepted: Pebble locks its directory itself"),
	notice("-otl", "", "accepted: Pebble locks its directory itself"),
	notice("-onr", "", "accepted: Pebble recovers from its write-ahead log; there is no auto-repair to turn off"),
	decimal("-asi", "sec", "synchronize every database this often", func(o *Options, f float64) { o.SyncEvery = f }),
	switchFlag("-ash", "make -asi's synchronization physical (flush to sstables)", func(o *Options) { o.SyncHard = true }),
	str("-bgs", "path", "snapshot directory: restore from it at start-up, snapshot into it every -bgsi", func(o *Options) *string { return &o.Snapshot }),
	decimal("-bgsi", "sec", "snapshot interval (default 180)", func(o *Options, f float64) { o.SnapshotIV = f }),
	notice("-bgsc", "str", "accepted: snapshots are Pebble directories, which Pebble compresses already (KT's .ktss files are read whatever their compression)"),
	switchFlag("-dmn", "daemonize (every path must then be absolute)", func(o *Options) { o.Daemon = true }),
	str("-pid", "file", "write the process id there; removed on exit", func(o *Options) *string { return &o.PIDPath }),
	str("-cmd", "path", "directory of synchronize command=... programs (default .)", func(o *Options) *string { return &o.CommandDir }),
	str("-scr", "file", "Lua script whose functions play_script calls", func(o *Options) *string { return &o.ScriptPath }),
	str("-mhost", "str", "replicate from this master (needs -sid and -rts)", func(o *Options) *string { return &o.MasterHost }),
	count("-mport", "the master's port, 1..65535 (default 1978)", func(o *Options, n int64) { o.MasterPort = clampInt(n) }),
	str("-rts", "file", "replication timestamp file", func(o *Options) *string { return &o.RTSPath }),
	decimal("-riv", "sec", "replication throttle (default 0; KT's is 0.04)", func(o *Options, f float64) { o.ReplIV = f }),
	notice("-plsv", "file", "accepted: ktd loads no plug-ins"),
	notice("-plex", "str", "accepted: ktd loads no plug-ins"),
	notice("-pldb", "file", "accepted: ktd loads no plug-ins"),
	str("-metrics", "host:port", "ktd: serve Prometheus metrics and pprof there", func(o *Options) *string { return &o.MetricsAddr }),
	switchFlag("-nosync", "ktd: acknowledge writes before they are synced", func(o *Options) { o.NoSync = true }),
	count("-maxconn", "ktd: cap on open client connections (default 4096, negative: none)", func(o *Options, n int64) { o.MaxConns = clampInt(n) }),
	switchFlag("-bootstrap", "ktd: a replica without a position starts from a snapshot of its master (a KT master: copied over RPC)", func(o *Options) { o.Bootstrap = true }),
	bootCount("-bsrate", "ktd: bootstrap from a KT master: records copied per second (default 0: no bound)", func(o *Options) *int { return &o.BootRate }),
	bootCount("-bsconn", "ktd: bootstrap from a KT master: connections to it (default 2)", func(o *Options) *int { return &o.BootConns }),
	bootCount("-bspage", "ktd: bootstrap from a KT master: keys per page (default 10000)", func(o *Options) *int { return &o.BootPage }),
	seconds("-rverify", "ktd: online verification of replicas this often (default 60; 0: never)", func(o *Options, d time.Duration) {
		o.ReplVerify = d
		if d <= 0 {
			o.ReplVerify = -1 // 0 means never
		}
	}),
	seconds("-ulogage", "ktd: drop update-log records older than this", func(o *Options, d time.Duration) { o.ULogAge = d }),
	seconds("-txidle", "ktd: abort a transaction idle this long (default 60; 0: never)", func(o *Options, d time.Duration) {
		o.TxIdle = d
		if d == 0 {
			o.TxIdle = -1 // 0 means never, as for -tout-like flags
		}
	}),
	size("-maxkey", "ktd: largest key (default 1m; negative: no bound)", func(o *Options, n int64) { o.MaxKey = n }),
	size("-maxval", "ktd: largest value (default 256m)", func(o *Options, n int64) { o.MaxValue = n }),
	size("-maxbody", "ktd: largest request body or binary frame (default 256m)", func(o *Options, n int64) { o.MaxBody = n }),
	count("-maxrec", "ktd: most records in one bulk request (default 1048576)", func(o *Options, n int64) { o.MaxRecords = n }),
	size("-maxinflight", "ktd: request bytes in flight on all connections together (default 256m)", func(o *Options, n int64) { o.MaxInflight = n }),
	seconds("-idle", "ktd: close a keep-alive connection idle this long (default 0: never)", func(o *Options, d time.Duration) { o.Idle = d }),
	seconds("-scrtime", "ktd: stop a play_script call running longer than this (default 10; 0: never)", func(o *Options, d time.Duration) {
		o.ScriptTime = d
		if d <= 0 {
			o.ScriptTime = -1 // 0 means no bound
		}
	}),
	count("-scrinst", "ktd: stop a play_script call after this many Lua instructions (default 0: no bound)", func(o *Options, n int64) { o.ScriptInstr = max(n, 0) }),
	size("-scrmem", "ktd: stop a play_script call whose Lua state holds more (default 128m; 0: no bound)", func(o *Options, n int64) {
		o.ScriptMem = n
		if n <= 0 {
			o.ScriptMem = -1 // 0 means no bound
		}
	}),
	str("-tlscert", "file", "ktd: serve TLS with this PEM certificate (chain); needs -tlskey", func(o *Options) *string { return &o.TLSCert }),
	str("-tlskey", "file", "ktd: the certificate's PEM key", func(o *Options) *string { return &o.TLSKey }),
	str("-tlsca", "file", "ktd: PEM CAs that client certificates (replicas') must verify against", func(o *Options) *string { return &o.TLSCA }),
	switchFlag("-tlsclients", "ktd: require a certificate of -tlsca from every client", func(o *Options) { o.TLSClients = true }),
	switchFlag("-tlsplain", "ktd: also serve plain-TCP clients on the TLS port", func(o *Options) { o.TLSPlain = true }),
	switchFlag("-mtls", "ktd: dial the master over TLS", func(o *Options) { o.MasterTLS = true }),
	str("-mtlscert", "file", "ktd: the replica link's certificate (default -tlscert)", func(o *Options) *string { return &o.MasterTLSCert }),
	str("-mtlskey", "file", "ktd: the replica link's key (default -tlskey)", func(o *Options) *string { return &o.MasterTLSKey }),
	str("-mtlsca", "file", "ktd: CAs the master must verify against (default -tlsca)", func(o *Options) *string { return &o.MasterTLSCA }),
}

// cloudflareFlags are the Cloudflare fork's flags: accepted with a notice.
var cloudflareFlags = []option{
	notice("-sec", "", cloudflareNotice), notice("-msec", "", cloudflareNotice),
	notice("-ca", "file", cloudflareNotice), notice("-pk", "file", cloudflareNotice),
	notice("-cert", "file", cloudflareNotice), notice("-rpk", "file", cloudflareNotice),
	notice("-rcert", "file", cloudflareNotice), notice("-auxhost", "str", cloudflareNotice),
	notice("-auxport", "num", cloudflareNotice),
}

const cloudflareNotice = "accepted: a Cloudflare-fork option; ktd's TLS flags are -tlscert, -tlskey, -tlsca, -tlsclients and -mtls"

// optionIndex finds an option by name.
var optionIndex = func() map[string]option {
	m := map[string]option{}
	for _, f := range append(slices.Clone(optionTable), cloudflareFlags...) {
		if _, dup := m[f.name]; dup {
			panic("cli: flag " + f.name + " defined twice")
		}
		m[f.name] = f
	}
	return m
}()

// Help returns the usage text followed by one line per flag.
func Help() string {
	var b strings.Builder
	b.WriteString(Usage)
	b.WriteString("\noptions:\n")
	for _, f := range optionTable {
		name := f.name
		if f.arg != "" {
			name += " " + f.arg
		}
		fmt.Fprintf(&b, "  %-20s %s\n", name, f.help)
	}
	fmt.Fprintf(&b, "  %-20s %s\n", "-sec -msec -ca ...", "accepted: the Cloudflare fork's flags (-sec -msec -ca -pk -cert -rpk -rcert -auxhost -auxport)")
	b.WriteString("\nNumbers: counts and sizes as KT writes them (1978, 64k, 1.5m, 2g: binary suffixes k m g t p e); seconds as decimals (30, 0.5).\n")
	return b.String()
}

func str(name, arg, help string, field func(*Options) *string) option {
	return option{name, arg, help, func(o *Options, v string) error { *field(o) = v; return nil }}
}

func switchFlag(name, help string, set func(*Options)) option {
	return option{name, "", help, func(o *Options, _ string) error { set(o); return nil }}
}

func level(name, help string, l slog.Level) option {
	return switchFlag(name, help, func(o *Options) { o.LogLevel = l })
}

// notice is a flag ktd accepts but ignores, saying why at start-up.
func notice(name, arg, why string) option {
	return option{name, arg, why, func(o *Options, _ string) error {
		o.Notices = append(o.Notices, fmt.Sprintf("%s is accepted and ignored: %s", name, strings.TrimPrefix(why, "accepted: ")))
		return nil
	}}
}

// count is a flag taking a whole number in KT's atoix form (1978, 2k).
func count(name, help string, set func(*Options, int64)) option {
	return option{name, "num", help, func(o *Options, v string) error {
		n, err := parseCount(v)
		if err == nil {
			set(o, n)
		}
		return err
	}}
}

// size is a flag taking a byte size in KT's atoix form (65536, 64k, 1.5m).
func size(name, help string, set func(*Options, int64)) option {
	return option{name, "num", help, func(o *Options, v string) error {
		n, err := parseSize(v)
		if err == nil {
			set(o, n)
		}
		return err
	}}
}

// decimal is a flag taking a decimal number (KT's atof: 16, 0.04).
func decimal(name, arg, help string, set func(*Options, float64)) option {
	return option{name, arg, help, func(o *Options, v string) error {
		f, err := parseDecimal(v)
		if err == nil {
			set(o, f)
		}
		return err
	}}
}

// seconds is a flag taking a duration in decimal seconds.
func seconds(name, help string, set func(*Options, time.Duration)) option {
	return option{name, "sec", help, func(o *Options, v string) error {
		d, err := parseSeconds(v)
		if err == nil {
			set(o, d)
		}
		return err
	}}
}

// clampInt converts to int, saturating (the range checks in validate then refuse it).
func clampInt(n int64) int {
	return int(max(min(n, math.MaxInt32), math.MinInt32))
}

// validate applies KT's start-up checks, with KT's messages.
func (o *Options) validate() error {
	switch {
	case o.Port < 1 || o.Port > 65535:
		return fmt.Errorf("%w: -port %d: must be in 1..65535", ErrUsage, o.Port)
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
	case o.MasterPort < 1 || o.MasterPort > 65535:
		return fmt.Errorf("%w: -mport %d: must be in 1..65535", ErrUsage, o.MasterPort)
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
