// Package conformance replays byte-exact recordings of a real Kyoto Tycoon
// 0.9.56 server against ktd (started in-process) or against any
// KT-compatible server reachable at an address, and reports per scenario
// whether the responses match.
//
// A scenario is a txtar file (see testdata/golden/README.md): a comment
// header naming the server command line, then request/response sections that
// were exchanged on one TCP connection, plus -- eof -- (the server closed the
// connection) and -- reconnect -- (the client opened a new one) markers.
// Before comparing, only three things in HTTP response heads are normalised:
// the Date value, the Server value and the target's port in Location.
package conformance

import (
	"bytes"
	"fmt"
	"github.com/ktdproject/ktd/internal/txtar"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RecordedPort is the port the golden recordings ran on; it appears in Host
// request headers and in REST PUT Location response headers.
const RecordedPort = "23978"

// Scenario is one recording: a list of steps replayed in order against a
// freshly started server.
type Scenario struct {
	// Name is the file's path relative to the loaded directory, with "/"
	// separators and without ".txtar" (e.g. "http/rpc-echo").
	Name string
	// Comment is the txtar comment header, verbatim.
	Comment string
	// Options are the server settings and timings the header asks for.
	Options Options
	// Steps are the exchanges in recording order.
	Steps []Step
	// Skip, when not empty, says why this scenario is not replayed here
	// (e.g. replication recordings, which have a format of their own).
	Skip string
	// Dir is the directory of the file (set by LoadDir); files the header
	// names, such as a -scr script, are looked up there.
	Dir string
}

// Step is one request written in a single write and every byte the server
// sent back before going silent or closing the connection.
type Step struct {
	// Request is the exact bytes to write.
	Request []byte
	// Response is the exact bytes expected back (Date already normalised
	// to "<date>"); empty means the server sends nothing.
	Response []byte
	// RequestHex and ResponseHex record that the section was a .hex one
	// (binary protocol); diffs are then shown in hex.
	RequestHex, ResponseHex bool
	// EOF means the server closes the connection after Response.
	EOF bool
	// Reconnect means the client closes its connection and dials a new one
	// before sending Request.
	Reconnect bool
	// Idle is the minimum silent time the recording allowed after sending
	// Request (zero: the default grace period). Extra bytes arriving within
	// it are a mismatch, and the next request is not sent before it ends.
	Idle time.Duration
}

// Options are the settings a scenario's header asks of the server and of the
// replay.
type Options struct {
	// Command is the ktserver command line from the header ("" if none).
	Command string
	// DBs are the database arguments of Command; nil means one ":" DB.
	DBs []string
	// RTS is the -rts file name (relative to the server's scratch
	// directory), "" if not set.
	RTS string
	// Script is the -scr file name, "" if not set.
	Script string
	// Idle is the idle time stated for the long step(s) ("Idle time for
	// the long step(s): 1.5 s."), zero if not stated.
	Idle time.Duration
	// Variable marks a recording whose values legitimately change from run
	// to run (the header says "NOT deterministic"): it is compared as
	// report output, structurally.
	Variable bool
}

// StandardDBs are the database arguments of most recordings, those an
// external server (KT_ADDR) is expected to have.
var StandardDBs = []string{"+", "other.kcpt"}

// NeedsConfig reports why the scenario needs a server started with
// particular flags or databases ("" if it does not): such scenarios only
// run in-process.
func (o Options) NeedsConfig() string {
	var need []string
	if o.DBs != nil && !slices.Equal(o.DBs, StandardDBs) {
		need = append(need, "databases "+strings.Join(o.DBs, " "))
	}
	if o.RTS != "" {
		need = append(need, "-rts "+o.RTS)
	}
	if o.Script != "" {
		need = append(need, "-scr "+o.Script)
	}
	if len(need) == 0 {
		return ""
	}
	return "needs a server started with " + strings.Join(need, " ") + ": runs only in-process"
}

// skipReplication is the Skip reason of every file under replication/.
const skipReplication = "replication recordings: replayed as streams by TestReplicationCaptures and TestReplicaAgainstRecordedMaster"

// LoadDir decodes every *.txtar file under dir (recursively), sorted by
// name. Files under a "replication" directory are returned undecoded with
// Skip set, since their sections are frames of a stream, not exchanges.
func LoadDir(dir string) ([]Scenario, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".txtar") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("conformance: no .txtar files under %s", dir)
	}
	slices.Sort(files)
	scs := make([]Scenario, 0, len(files))
	for _, f := range files {
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".txtar")
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if slices.Contains(strings.Split(name, "/"), "replication") {
			comment, _ := txtar.Split(data)
			scs = append(scs, Scenario{Name: name, Comment: string(comment), Skip: skipReplication, Dir: filepath.Dir(f)})
			continue
		}
		sc, err := Decode(name, data)
		if err != nil {
			return nil, err
		}
		sc.Dir = filepath.Dir(f)
		scs = append(scs, sc)
	}
	return scs, nil
}

// BaseName returns the scenario's file name without directory and
// extension; it is the key of the known-differences table.
func (sc Scenario) BaseName() string { return path.Base(sc.Name) }

// Decode parses one scenario file. name is only used for Scenario.Name and
// error messages.
func Decode(name string, data []byte) (Scenario, error) {
	comment, sections := txtar.Split(data)
	sc := Scenario{Name: name, Comment: string(comment)}
	opts, err := parseOptions(sc.Comment)
	if err != nil {
		return sc, fmt.Errorf("%s: %w", name, err)
	}
	sc.Options = opts
	steps, err := decodeSteps(sections, opts.Idle)
	if err != nil {
		return sc, fmt.Errorf("%s: %w", name, err)
	}
	sc.Steps = steps
	return sc, nil
}

// decodeSteps turns the section sequence into steps, checking that every
// request is followed by exactly one response and that markers sit between
// exchanges.
func decodeSteps(sections []txtar.Section, idle time.Duration) ([]Step, error) {
	var steps []Step
	pendingReconnect := false
	// state: 'r' after a request, 'R' after a response, 'e' after eof.
	state := byte(0)
	for _, s := range sections {
		switch s.Name {
		case "request", "request.hex":
			if state == 'r' {
				return nil, fmt.Errorf("line %d: request without a response before it", s.Line)
			}
			b, err := decodeSection(s)
			if err != nil {
				return nil, err
			}
			steps = append(steps, Step{
				Request:    b,
				RequestHex: s.Name == "request.hex",
				Reconnect:  pendingReconnect || state == 'e',
				Idle:       idle,
			})
			pendingReconnect = false
			state = 'r'
		case "response", "response.hex":
			if state != 'r' {
				return nil, fmt.Errorf("line %d: %s not preceded by a request", s.Line, s.Name)
			}
			b, err := decodeSection(s)
			if err != nil {
				return nil, err
			}
			st := &steps[len(steps)-1]
			st.Response, st.ResponseHex = b, s.Name == "response.hex"
			state = 'R'
		case "eof":
			if state != 'R' {
				return nil, fmt.Errorf("line %d: eof not after a response", s.Line)
			}
			steps[len(steps)-1].EOF = true
			state = 'e'
		case "reconnect":
			if state != 'R' && state != 'e' {
				return nil, fmt.Errorf("line %d: reconnect not after a response", s.Line)
			}
			pendingReconnect = true
		default:
			return nil, fmt.Errorf("line %d: unknown section %q", s.Line, s.Name)
		}
		if (s.Name == "eof" || s.Name == "reconnect") && len(bytes.TrimSpace(s.Data)) != 0 {
			return nil, fmt.Errorf("line %d: %s section is not empty", s.Line, s.Name)
		}
	}
	switch {
	case len(steps) == 0:
		return nil, fmt.Errorf("no request sections")
	case state == 'r':
		return nil, fmt.Errorf("last request has no response section")
	case pendingReconnect:
		return nil, fmt.Errorf("reconnect marker after the last exchange")
	}
	return steps, nil
}

func decodeSection(s txtar.Section) ([]byte, error) {
	var b []byte
	var err error
	if strings.HasSuffix(s.Name, ".hex") {
		b, err = DecodeHex(s.Data)
	} else {
		b, err = Unescape(s.Data)
	}
	if err != nil {
		return nil, fmt.Errorf("section %s at line %d: %w", s.Name, s.Line, err)
	}
	return b, nil
}

var (
	commandRE = regexp.MustCompile(`(?m)^\s*(ktserver\s.*)$`)
	idleRE    = regexp.MustCompile(`Idle time for the long step\(s\): ([0-9.]+) s`)
	// valueFlags are the ktserver flags that take an argument.
	valueFlags = map[string]bool{
		"-host": true, "-port": true, "-tout": true, "-th": true, "-log": true,
		"-ulog": true, "-ulim": true, "-uasi": true, "-sid": true, "-mhost": true,
		"-mport": true, "-rts": true, "-riv": true, "-plsv": true, "-plex": true,
		"-pldb": true, "-cmd": true, "-scr": true, "-bgs": true, "-bgsi": true,
		"-bgc": true, "-pid": true,
	}
)

// parseOptions reads the server command line, the idle time and the
// determinism note from a comment header.
func parseOptions(comment string) (Options, error) {
	var o Options
	if m := idleRE.FindStringSubmatch(comment); m != nil {
		sec, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return o, fmt.Errorf("idle time %q: %w", m[1], err)
		}
		o.Idle = time.Duration(sec * float64(time.Second))
	}
	o.Variable = strings.Contains(comment, "NOT deterministic")
	m := commandRE.FindStringSubmatch(comment)
	if m == nil {
		return o, nil
	}
	o.Command = strings.TrimSpace(m[1])
	args := strings.Fields(o.Command)[1:]
	for i := 0; i < len(args); i++ {
		a := strings.Trim(args[i], "'")
		switch {
		case valueFlags[a]:
			if i+1 == len(args) {
				return o, fmt.Errorf("command line: %s without a value", a)
			}
			i++
			switch a {
			case "-rts":
				o.RTS = args[i]
			case "-scr":
				o.Script = args[i]
			}
		case strings.HasPrefix(a, "-"):
			// a boolean flag such as -ls
		default:
			o.DBs = append(o.DBs, a)
		}
	}
	return o, nil
}
