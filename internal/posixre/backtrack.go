package posixre

import "errors"

// The backtracking matcher runs what Go's regexp cannot: back references and the
// anchors \< and \>. It explores the alternatives in glibc's order of preference and
// finds the leftmost match, and among those the longest (POSIX); of several longest it
// keeps the first found, as Go's regexp does in its leftmost-longest mode. Without back
// references a bitmap of visited (instruction, position) pairs keeps it polynomial
// (Go's "bit state" argument: a pair that failed once fails again); with them the work
// is bounded by a step budget, past which the match fails with ErrBudget.

// ErrBudget is returned when a match needs more steps than its budget: only patterns
// with back references can get there (see DefaultBudget).
var ErrBudget = errors.New("posixre: the match exceeded its step budget")

// DefaultBudget is the number of matcher steps one Match or Replace call may take
// (about 10 ms of work). Only patterns with back references can use it up; matching
// then fails with ErrBudget rather than stalling the caller.
const DefaultBudget = 1 << 20

// maxInsts bounds a compiled program: intervals are expanded into copies, as glibc does,
// so "(x{1000}){1000}" would need a million instructions. Such a pattern is refused.
const maxInsts = 1 << 16

// maxVisitBits bounds the bitmap of visited pairs (512 KiB); beyond it the matcher runs
// without one, under its step budget.
const maxVisitBits = 1 << 22

type instOp uint8

const (
	iByte    instOp = iota // the byte at pos is in set: advance
	iSplit                 // try x, then y
	iJmp                   // go to x
	iSave                  // caps[n] = pos
	iAssert                // assertion n holds at pos
	iBackref               // the text of group n follows
	iMark                  // regs[n] = pos (a loop iteration starts)
	iCheck                 // fail if pos == regs[n] (the iteration matched nothing)
	iMatch
)

type inst struct {
	op   instOp
	x, y int
	n    int
	set  *byteSet
}

type prog struct {
	insts      []inst
	nregs      int
	ncap       int // 2 × (groups + 1)
	hasBackref bool
}

var errTooComplex = errors.New("posixre: program too large")

// compileProg turns a tree into a program for the backtracking matcher.
func compileProg(tree *node, nsub int) (*prog, error) {
	c := &progCompiler{p: &prog{ncap: 2 * (nsub + 1)}}
	c.emit(inst{op: iSave, n: 0})
	c.node(tree)
	c.emit(inst{op: iSave, n: 1})
	c.emit(inst{op: iMatch})
	if c.tooBig {
		return nil, errTooComplex
	}
	return c.p, nil
}

type progCompiler struct {
	p      *prog
	tooBig bool
}

func (c *progCompiler) emit(in inst) int {
	if len(c.p.insts) >= maxInsts {
		c.tooBig = true
		return len(c.p.insts) - 1
	}
	c.p.insts = append(c.p.insts, in)
	return len(c.p.insts) - 1
}

func (c *progCompiler) pc() int { return len(c.p.insts) }

func (c *progCompiler) node(n *node) {
	if c.tooBig {
		return
	}
	switch n.op {
	case opEmpty:
	case opSet:
		c.emit(inst{op: iByte, set: &n.set})
	case opConcat:
		for _, s := range n.subs {
			c.node(s)
		}
	case opAlt:
		var jumps []int
		for i, s := range n.subs {
			if i < len(n.subs)-1 {
				split := c.emit(inst{op: iSplit})
				c.p.insts[split].x = c.pc()
				c.node(s)
				jumps = append(jumps, c.emit(inst{op: iJmp}))
				if c.tooBig {
					return
				}
				c.p.insts[split].y = c.pc()
			} else {
				c.node(s)
			}
		}
		if c.tooBig {
			return
		}
		for _, j := range jumps {
			c.p.insts[j].x = c.pc()
		}
	case opGroup:
		c.emit(inst{op: iSave, n: 2 * n.idx})
		c.node(n.sub)
		c.emit(inst{op: iSave, n: 2*n.idx + 1})
	case opAssert:
		c.emit(inst{op: iAssert, n: int(n.assert)})
	case opBackref:
		c.p.hasBackref = true
		c.emit(inst{op: iBackref, n: n.idx})
	case opRepeat:
		if n.max < 0 {
			// X{n,} is n-1 copies and X+; X* is (X+)?, as Go compiles them, so that
			// the first iteration may match nothing and the submatches agree.
			if n.min == 0 {
				split := c.emit(inst{op: iSplit})
				c.p.insts[split].x = c.pc()
				c.plus(n.sub)
				if !c.tooBig {
					c.p.insts[split].y = c.pc()
				}
				return
			}
			for range n.min - 1 {
				c.node(n.sub)
			}
			c.plus(n.sub)
			return
		}
		for range n.min {
			c.node(n.sub)
			if c.tooBig {
				return
			}
		}
		// (X(X(X)?)?)? for the optional copies, as glibc expands them.
		var splits []int
		for range n.max - n.min {
			splits = append(splits, c.emit(inst{op: iSplit}))
			if c.tooBig {
				return
			}
			c.p.insts[splits[len(splits)-1]].x = c.pc()
			c.node(n.sub)
			if c.tooBig {
				return
			}
		}
		for _, s := range splits {
			c.p.insts[s].y = c.pc()
		}
	}
}

// plus emits X+ as Go compiles it: X, then back to the same X while the iteration
// matched something. Go's machines never run an instruction twice at one position, so
// an iteration that matched nothing ends the loop there; here the check before going
// back does that, and keeps a loop from repeating forever without the visited bitmap.
func (c *progCompiler) plus(sub *node) {
	reg := c.p.nregs
	c.p.nregs++
	start := c.emit(inst{op: iMark, n: reg})
	c.node(sub)
	loop := c.emit(inst{op: iSplit})
	c.p.insts[loop].x = c.pc()
	c.emit(inst{op: iCheck, n: reg})
	c.emit(inst{op: iJmp, x: start})
	if !c.tooBig {
		c.p.insts[loop].y = c.pc()
	}
}

// Backtracking stack entries.
const (
	fBranch = iota // resume at pc, pos
	fCap           // restore caps[n] = old
	fReg           // restore regs[n] = old
)

type frame struct {
	kind    uint8
	pc, pos int
	n, old  int
}

type machine struct {
	p       *prog
	s       []byte
	notbol  bool
	longest bool
	caps    []int
	regs    []int
	stack   []frame
	visited []uint64
	steps   *int // remaining budget, shared by the calls of one Match or Replace

	bestEnd  int
	bestCaps []int
}

// search finds the leftmost match of p in s (the longest there with longest), and
// returns its capture positions (2 per group, -1 when unset), or nil.
func (p *prog) search(s []byte, notbol, longest bool, steps *int) ([]int, error) {
	m := &machine{p: p, s: s, notbol: notbol, longest: longest, steps: steps,
		caps: make([]int, p.ncap), regs: make([]int, p.nregs)}
	if bitsNeeded := len(p.insts) * (len(s) + 1); !p.hasBackref && bitsNeeded <= maxVisitBits {
		m.visited = make([]uint64, (bitsNeeded+63)/64)
	}
	for start := 0; start <= len(s); start++ {
		for i := range m.caps {
			m.caps[i] = -1
		}
		for i := range m.regs {
			m.regs[i] = -1
		}
		ok, err := m.try(start)
		if err != nil {
			return nil, err
		}
		if ok {
			if longest {
				return m.bestCaps, nil
			}
			return append([]int(nil), m.caps...), nil
		}
	}
	return nil, nil
}

// try runs the program from position start.
func (m *machine) try(start int) (bool, error) {
	m.bestEnd = -1
	m.stack = append(m.stack[:0], frame{kind: fBranch, pc: 0, pos: start})
	insts := m.p.insts
	width := len(m.s) + 1
	for len(m.stack) > 0 {
		f := m.stack[len(m.stack)-1]
		m.stack = m.stack[:len(m.stack)-1]
		switch f.kind {
		case fCap:
			m.caps[f.n] = f.old
			continue
		case fReg:
			m.regs[f.n] = f.old
			continue
		}
		pc, pos := f.pc, f.pos
	run:
		for {
			if *m.steps <= 0 {
				return false, ErrBudget
			}
			*m.steps--
			if m.visited != nil {
				bit := pc*width + pos
				if m.visited[bit/64]&(1<<(bit%64)) != 0 {
					break run
				}
				m.visited[bit/64] |= 1 << (bit % 64)
			}
			in := &insts[pc]
			switch in.op {
			case iByte:
				if pos >= len(m.s) || !in.set.has(m.s[pos]) {
					break run
				}
				pc, pos = pc+1, pos+1
			case iSplit:
				m.stack = append(m.stack, frame{kind: fBranch, pc: in.y, pos: pos})
				pc = in.x
			case iJmp:
				pc = in.x
			case iSave:
				m.stack = append(m.stack, frame{kind: fCap, n: in.n, old: m.caps[in.n]})
				m.caps[in.n] = pos
				pc++
			case iAssert:
				if !m.assert(assertKind(in.n), pos) {
					break run
				}
				pc++
			case iBackref:
				from, to := m.caps[2*in.n], m.caps[2*in.n+1]
				if from < 0 || to < 0 {
					break run // the group took no part in the match
				}
				l := to - from
				if pos+l > len(m.s) || string(m.s[pos:pos+l]) != string(m.s[from:to]) {
					break run
				}
				pc, pos = pc+1, pos+l
			case iMark:
				m.stack = append(m.stack, frame{kind: fReg, n: in.n, old: m.regs[in.n]})
				m.regs[in.n] = pos
				pc++
			case iCheck:
				if m.regs[in.n] == pos {
					break run
				}
				pc++
			case iMatch:
				if !m.longest {
					return true, nil
				}
				if pos > m.bestEnd {
					m.bestEnd = pos
					m.bestCaps = append(m.bestCaps[:0], m.caps...)
					if pos == len(m.s) {
						return true, nil // nothing can be longer
					}
				}
				break run
			}
		}
	}
	return m.bestEnd >= 0, nil
}

// assert evaluates a zero-width assertion at pos, as glibc's contexts do: the start of
// the subject has a non-word byte before it, the end a non-word byte after it.
func (m *machine) assert(k assertKind, pos int) bool {
	prevWord := pos > 0 && isWord(m.s[pos-1])
	nextWord := pos < len(m.s) && isWord(m.s[pos])
	switch k {
	case aLineFirst:
		return pos == 0 && !m.notbol
	case aBufFirst:
		return pos == 0
	case aLineLast, aBufLast:
		return pos == len(m.s)
	case aWordFirst:
		return !prevWord && nextWord
	case aWordLast:
		return prevWord && !nextWord
	case aWordDelim:
		return prevWord != nextWord
	case aNotWordDelim:
		return prevWord == nextWord
	}
	return false
}
