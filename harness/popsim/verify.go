package popsim

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// verification is the outcome of the final checks.
type verification struct {
	problems []string
	digests  map[string]string // node -> digest of its records
	digestOK map[string]bool   // node -> equals the master's
	records  int               // records on the master
}

// maxProblemsPerNode bounds the differences listed for one replica.
const maxProblemsPerNode = 5

// verify scans the master and every replica (after the drain) and checks:
// every replica's records and expiry times equal the master's; the
// master holds the final state of every key as the acknowledged writes
// left it; no stream applied a key's updates out of order; every scheduled
// action succeeded.
func (s *sim) verify(ctx context.Context, drained bool) *verification {
	v := &verification{digests: map[string]string{}, digestOK: map[string]bool{}}
	s.mu.Lock()
	for _, err := range s.errs {
		v.problems = append(v.problems, "scenario: "+err.Error())
	}
	s.mu.Unlock()
	if !drained {
		for _, n := range s.nodes[1:] {
			st := s.streams[n.name]
			if l := st.lag(s.reg.now()); l > 0 {
				v.problems = append(v.problems, fmt.Sprintf("%s: still missing acknowledged writes %v after the writes ended + %v of drain",
					n.name, l.Round(time.Millisecond), s.cfg.Drain))
			}
		}
	}

	scans := make(map[string]map[string]kit.Record, len(s.nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	// At most 16 scans at once: hundreds at once (in-process) time out
	// on a small machine.
	sem := make(chan struct{}, 16)
	for _, n := range s.nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			recs, err := kit.Scan(ctx, n.addr, keyPrefix, n.clientTLS())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				v.problems = append(v.problems, fmt.Sprintf("%s: scan: %v", n.name, err))
				return
			}
			scans[n.name] = recs
		})
	}
	wg.Wait()
	scanTime := time.Now().Unix()

	master, ok := scans["master"]
	if ok {
		v.records = len(master)
		v.digests["master"] = kit.Digest(master)
		v.problems = append(v.problems, s.checkModel(master, scanTime)...)
	}
	for _, n := range s.nodes[1:] {
		recs, ok := scans[n.name]
		if !ok {
			continue
		}
		v.digests[n.name] = kit.Digest(recs)
		v.digestOK[n.name] = master != nil && v.digests[n.name] == v.digests["master"]
		if master != nil && !v.digestOK[n.name] {
			v.problems = append(v.problems, diffRecords(n.name, master, recs)...)
		}
	}
	for _, n := range s.nodes[1:] {
		st := s.streams[n.name]
		st.mu.Lock()
		if st.violations > 0 {
			v.problems = append(v.problems, fmt.Sprintf("%s: %d order violations in its update-log stream; first: %s",
				n.name, st.violations, strings.Join(st.violationText[:min(3, len(st.violationText))], "; ")))
		}
		st.mu.Unlock()
	}
	return v
}

// describe shows a record briefly: its sequence number and expiry.
func describe(r kit.Record, ok bool) string {
	if !ok {
		return "absent"
	}
	seq, sok := valueSeq([]byte(r.Value))
	xt := "no xt"
	if r.XT != kit.XTNone {
		xt = "xt " + strconv.FormatInt(r.XT, 10)
	}
	if !sok {
		return fmt.Sprintf("foreign value %.20q (%s)", r.Value, xt)
	}
	return fmt.Sprintf("seq %d (%s)", seq, xt)
}

// diffRecords lists how a replica's records differ from the master's.
func diffRecords(name string, master, replica map[string]kit.Record) []string {
	var keys []string
	for k, m := range master {
		if r, ok := replica[k]; !ok || r != m {
			keys = append(keys, k)
		}
	}
	for k := range replica {
		if _, ok := master[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := []string{fmt.Sprintf("%s: %d records differ from the master's (master %d records, replica %d)",
		name, len(keys), len(master), len(replica))}
	for _, k := range keys[:min(len(keys), maxProblemsPerNode)] {
		m, mok := master[k]
		r, rok := replica[k]
		out = append(out, fmt.Sprintf("%s: %s: master has %s, replica has %s", name, k, describe(m, mok), describe(r, rok)))
	}
	return out
}

// expected is one acceptable final state of a key.
type expected struct {
	present bool
	seq     int32
	xt      int64 // kit.XTNone when none
}

// checkModel checks that the master holds, for every key, the state its
// last acknowledged write left — or the state of a later write whose fate
// is unknown (no answer arrived). Records that expire within a second of
// the scan may be either present or absent.
func (s *sim) checkModel(master map[string]kit.Record, scanTime int64) []string {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	var problems []string
	bad := 0
	for k, name := range s.reg.keys {
		ids := s.reg.perKey[k]
		last := -1
		for j := len(ids) - 1; j >= 0; j-- {
			if s.reg.writes[ids[j]].state == stAcked {
				last = j
				break
			}
		}
		var cands []expected
		add := func(w *write) {
			switch w.kind {
			case opRemove:
				cands = append(cands, expected{})
			case opSet:
				cands = append(cands, expected{present: true, seq: w.seq, xt: kit.XTNone})
			case opSetXT:
				if w.xt > scanTime+1 {
					cands = append(cands, expected{present: true, seq: w.seq, xt: w.xt})
				}
				if w.xt <= scanTime+1 {
					cands = append(cands, expected{}) // expired (or about to)
				}
				if w.xt >= scanTime-1 && w.xt <= scanTime+1 {
					cands = append(cands, expected{present: true, seq: w.seq, xt: w.xt})
				}
			}
		}
		if last < 0 {
			cands = append(cands, expected{}) // never written for sure
		} else {
			add(&s.reg.writes[ids[last]])
		}
		for j := last + 1; j < len(ids); j++ {
			if w := &s.reg.writes[ids[j]]; w.state == stFailed || w.state == stPending {
				add(w)
			}
		}
		got, ok := master[name]
		var g expected
		if ok {
			seq, sok := valueSeq([]byte(got.Value))
			g = expected{present: true, seq: seq, xt: got.XT}
			if !sok || got.Value != value(name, seq) {
				g.seq = -1 // not a value popsim wrote
			}
		}
		if slices.Contains(cands, g) {
			continue
		}
		bad++
		if bad > 20 {
			continue
		}
		want := "absent"
		if last >= 0 {
			w := &s.reg.writes[ids[last]]
			want = fmt.Sprintf("the state of acknowledged write seq %d (%s at %.3fs)", w.seq, kindName(w.kind),
				time.Duration(w.acked-s.writeStart).Seconds())
		}
		problems = append(problems, fmt.Sprintf("master: %s: has %s, want %s: an acknowledged write is lost or a stray one applied",
			name, describe(got, ok), want))
	}
	if bad > 20 {
		problems = append(problems, fmt.Sprintf("master: %d keys in all do not match the acknowledged writes", bad))
	}
	return problems
}

func kindName(k uint8) string {
	switch k {
	case opSet:
		return "set"
	case opSetXT:
		return "set with xt"
	case opRemove:
		return "remove"
	}
	return "?"
}
