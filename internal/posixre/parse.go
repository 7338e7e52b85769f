package posixre

import "strings"

// The parser follows glibc's posix/regcomp.c (peek_token, parse_reg_exp, parse_branch,
// parse_expression, parse_sub_exp, parse_dup_op, fetch_number, parse_bracket_exp) for
// the syntax regcomp(REG_EXTENDED) selects, RE_SYNTAX_POSIX_EXTENDED, in the C locale:
// the same patterns are accepted and refused, and accepted ones mean the same.

// dupMax is glibc's RE_DUP_MAX: the largest count of an interval "{n,m}".
const dupMax = 0x7fff

// maxHeight bounds how deeply groups and repetitions nest (Go's regexp has the same
// bound), so that no pattern can make the parser or the matchers recurse without end.
// glibc has none; deeper patterns are refused as too big.
const maxHeight = 1000

// ErrorCode is the error regcomp returns for a pattern it refuses (regex.h's REG_*).
type ErrorCode int

// The codes of regex.h that RE_SYNTAX_POSIX_EXTENDED can produce.
const (
	ErrBadPattern     ErrorCode = 2  // REG_BADPAT: invalid regular expression
	ErrCollate        ErrorCode = 3  // REG_ECOLLATE: invalid collation character
	ErrClass          ErrorCode = 4  // REG_ECTYPE: invalid character class name
	ErrEscape         ErrorCode = 5  // REG_EESCAPE: trailing backslash
	ErrBackref        ErrorCode = 6  // REG_ESUBREG: invalid back reference
	ErrBracket        ErrorCode = 7  // REG_EBRACK: unmatched [, [^, [:, [., or [=
	ErrParen          ErrorCode = 8  // REG_EPAREN: unmatched ( or \(
	ErrBrace          ErrorCode = 9  // REG_EBRACE: unmatched \{
	ErrBadBrace       ErrorCode = 10 // REG_BADBR: invalid content of \{\}
	ErrRange          ErrorCode = 11 // REG_ERANGE: invalid range end
	ErrBadRepeat      ErrorCode = 13 // REG_BADRPT: invalid preceding regular expression
	ErrSize           ErrorCode = 15 // REG_ESIZE: regular expression too big
	ErrRightParen     ErrorCode = 16 // REG_ERPAREN: unmatched ) or \) (not produced by ERE)
	errCodeTooComplex ErrorCode = 100
)

var errorText = map[ErrorCode]string{
	ErrBadPattern:     "Invalid regular expression",
	ErrCollate:        "Invalid collation character",
	ErrClass:          "Invalid character class name",
	ErrEscape:         "Trailing backslash",
	ErrBackref:        "Invalid back reference",
	ErrBracket:        "Unmatched [, [^, [:, [., or [=",
	ErrParen:          "Unmatched ( or \\(",
	ErrBrace:          "Unmatched \\{",
	ErrBadBrace:       "Invalid content of \\{\\}",
	ErrRange:          "Invalid range end",
	ErrBadRepeat:      "Invalid preceding regular expression",
	ErrSize:           "Regular expression too big",
	ErrRightParen:     "Unmatched ) or \\)",
	errCodeTooComplex: "Regular expression too big for this matcher",
}

// Error is a pattern Compile refuses. KT answers every such pattern "compilation
// failed".
type Error struct {
	Code    ErrorCode
	Pattern string
}

// Error returns glibc's message for the code, with the pattern.
func (e *Error) Error() string {
	return "posixre: " + errorText[e.Code] + ": " + quote(e.Pattern)
}

func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return "`" + strings.ToValidUTF8(s, "\uFFFD") + "`"
}

// Node kinds of the syntax tree.
type opKind uint8

const (
	opEmpty   opKind = iota // matches the empty string (glibc's NULL tree)
	opSet                   // one byte of set
	opConcat                // subs in sequence
	opAlt                   // one of subs, earlier preferred
	opGroup                 // capturing group idx around sub
	opRepeat                // sub min..max times (max < 0: no limit)
	opAssert                // zero-width assertion assert
	opBackref               // the text group idx matched
)

// Zero-width assertions (glibc's ANCHOR context types).
type assertKind uint8

const (
	aLineFirst    assertKind = iota // ^: the start, unless matching with notbol
	aLineLast                       // $: the end
	aBufFirst                       // \`: the start
	aBufLast                        // \': the end
	aWordFirst                      // \<: a word starts here
	aWordLast                       // \>: a word ends here
	aWordDelim                      // \b: a word starts or ends here
	aNotWordDelim                   // \B: between two word bytes or two non-word bytes
)

type node struct {
	h        int // height of the tree below (a leaf is 1)
	op       opKind
	set      byteSet
	subs     []*node
	sub      *node
	idx      int // group number (1-based) for opGroup and opBackref
	min, max int
	assert   assertKind
}

var emptyNode = &node{op: opEmpty, h: 1}

// Token types of peek_token / peek_token_bracket.
type tokType uint8

const (
	tEnd tokType = iota
	tChar
	tAlt
	tStar
	tPlus
	tQuest
	tOpenDup
	tCloseDup
	tOpenSub
	tCloseSub
	tOpenBracket
	tPeriod
	tAnchor
	tBackref
	tWord
	tNotWord
	tSpace
	tNotSpace
	tBackslash // a trailing backslash
	// inside brackets
	tOpenColl
	tOpenEquiv
	tOpenClass
	tRange
	tCloseBracket
	tNonMatch
)

type token struct {
	typ    tokType
	c      byte // the byte (for an escape, the byte after the backslash)
	idx    int  // back reference number (1-9)
	anchor assertKind
}

type parser struct {
	pat       string
	pos       int
	tok       token
	nsub      int
	completed uint16 // groups 1-9 that are closed, which back references may name
	err       ErrorCode
}

// parse parses pattern (already cut at its first NUL) into a tree and its number of
// groups.
func parse(pattern string) (*node, int, error) {
	p := &parser{pat: pattern}
	p.fetch()
	tree := p.regExp(0)
	if p.err != 0 {
		return nil, 0, &Error{Code: p.err, Pattern: pattern}
	}
	// At nest 0 an unmatched ')' is an ordinary byte, so the expression ends only at
	// the end of the pattern.
	return orEmpty(tree), p.nsub, nil
}

func orEmpty(n *node) *node {
	if n == nil {
		return emptyNode
	}
	return n
}

func (p *parser) fail(code ErrorCode) *node {
	if p.err == 0 {
		p.err = code
	}
	return nil
}

// peek reads the token at p.pos outside brackets and returns it with its length.
func (p *parser) peek() (token, int) {
	if p.pos >= len(p.pat) {
		return token{typ: tEnd}, 0
	}
	c := p.pat[p.pos]
	if c == '\\' {
		if p.pos+1 >= len(p.pat) {
			return token{typ: tBackslash, c: c}, 1
		}
		c2 := p.pat[p.pos+1]
		t := token{typ: tChar, c: c2}
		switch c2 {
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			t.typ, t.idx = tBackref, int(c2-'0')
		case '<':
			t.typ, t.anchor = tAnchor, aWordFirst
		case '>':
			t.typ, t.anchor = tAnchor, aWordLast
		case 'b':
			t.typ, t.anchor = tAnchor, aWordDelim
		case 'B':
			t.typ, t.anchor = tAnchor, aNotWordDelim
		case '`':
			t.typ, t.anchor = tAnchor, aBufFirst
		case '\'':
			t.typ, t.anchor = tAnchor, aBufLast
		case 'w':
			t.typ = tWord
		case 'W':
			t.typ = tNotWord
		case 's':
			t.typ = tSpace
		case 'S':
			t.typ = tNotSpace
		}
		// Everything else, \( \) \{ \} \| \+ \? \. \d \n included, is the byte itself.
		return t, 2
	}
	t := token{typ: tChar, c: c}
	switch c {
	case '|':
		t.typ = tAlt
	case '*':
		t.typ = tStar
	case '+':
		t.typ = tPlus
	case '?':
		t.typ = tQuest
	case '{':
		t.typ = tOpenDup
	case '}':
		t.typ = tCloseDup
	case '(':
		t.typ = tOpenSub
	case ')':
		t.typ = tCloseSub
	case '[':
		t.typ = tOpenBracket
	case '.':
		t.typ = tPeriod
	case '^':
		t.typ, t.anchor = tAnchor, aLineFirst
	case '$':
		t.typ, t.anchor = tAnchor, aLineLast
	}
	return t, 1
}

func (p *parser) fetch() {
	t, n := p.peek()
	p.tok = t
	p.pos += n
}

// regExp is parse_reg_exp: branches separated by '|'.
func (p *parser) regExp(nest int) *node {
	tree := p.branch(nest)
	if p.err != 0 {
		return nil
	}
	for p.tok.typ == tAlt {
		p.fetch()
		var br *node
		if p.tok.typ != tAlt && p.tok.typ != tEnd && (nest == 0 || p.tok.typ != tCloseSub) {
			br = p.branch(nest)
			if p.err != 0 {
				return nil
			}
		}
		if tree != nil && tree.op == opAlt {
			tree.subs = append(tree.subs, orEmpty(br)) // a|b|c: one choice of three
			tree = p.add(tree, orEmpty(br))
		} else {
			tree = p.grow(&node{op: opAlt, subs: []*node{orEmpty(tree), orEmpty(br)}})
		}
		if p.err != 0 {
			return nil
		}
	}
	return tree
}

// add accounts for a child appended to n (see grow).
func (p *parser) add(n, child *node) *node {
	n.h = max(n.h, child.h+1)
	if n.h > maxHeight {
		return p.fail(errCodeTooComplex)
	}
	return n
}

// grow sets n's height from its children and refuses trees higher than maxHeight.
func (p *parser) grow(n *node) *node {
	h := 0
	if n.sub != nil {
		h = n.sub.h
	}
	for _, s := range n.subs {
		h = max(h, s.h)
	}
	n.h = h + 1
	if n.h > maxHeight {
		return p.fail(errCodeTooComplex)
	}
	return n
}

// branch is parse_branch: expressions in sequence.
func (p *parser) branch(nest int) *node {
	tree := p.expression(nest)
	if p.err != 0 {
		return nil
	}
	for p.tok.typ != tAlt && p.tok.typ != tEnd && (nest == 0 || p.tok.typ != tCloseSub) {
		exp := p.expression(nest)
		if p.err != 0 {
			return nil
		}
		switch {
		case tree == nil:
			tree = exp
		case exp != nil:
			if tree.op == opConcat {
				tree.subs = append(tree.subs, exp)
				tree = p.add(tree, exp)
			} else {
				tree = p.grow(&node{op: opConcat, subs: []*node{tree, exp}})
			}
			if p.err != 0 {
				return nil
			}
		}
	}
	return tree
}

// expression is parse_expression: one atom and the repetition operators after it.
func (p *parser) expression(nest int) *node {
	var tree *node
	switch t := p.tok; t.typ {
	case tChar, tCloseDup:
		tree = literal(t.c)
	case tCloseSub:
		// RE_UNMATCHED_RIGHT_PAREN_ORD: a ')' without '(' is an ordinary byte.
		tree = literal(')')
	case tOpenSub:
		tree = p.subExp(nest + 1)
		if p.err != 0 {
			return nil
		}
	case tOpenBracket:
		tree = p.bracket()
		if p.err != 0 {
			return nil
		}
	case tBackref:
		if p.completed&(1<<(t.idx-1)) == 0 {
			return p.fail(ErrBackref)
		}
		tree = &node{op: opBackref, idx: t.idx, h: 1}
	case tOpenDup, tStar, tPlus, tQuest:
		// RE_CONTEXT_INVALID_OPS: a repetition with nothing before it.
		return p.fail(ErrBadRepeat)
	case tAnchor:
		// glibc splits \b into \< or \>, and \B into "inside a word" or "between
		// non-word bytes": alternatives of zero width, kept here as one assertion.
		tree = &node{op: opAssert, assert: t.anchor, h: 1}
		// An anchor takes no repetition: "^*" is '^' then a '*' with nothing before it.
		p.fetch()
		return tree
	case tPeriod:
		tree = &node{op: opSet, h: 1}
		tree.set.addRange(1, 255) // RE_DOT_NEWLINE, RE_DOT_NOT_NULL
	case tWord, tNotWord:
		tree = &node{op: opSet, set: wordSet(), h: 1}
		if t.typ == tNotWord {
			tree.set.negate()
		}
	case tSpace, tNotSpace:
		tree = &node{op: opSet, set: spaceSet(), h: 1}
		if t.typ == tNotSpace {
			tree.set.negate()
		}
	case tAlt, tEnd:
		return nil
	case tBackslash:
		return p.fail(ErrEscape)
	}
	p.fetch()
	for p.tok.typ == tStar || p.tok.typ == tPlus || p.tok.typ == tQuest || p.tok.typ == tOpenDup {
		tree = p.dupOp(tree)
		if p.err != 0 {
			return nil
		}
	}
	return tree
}

func literal(c byte) *node {
	n := &node{op: opSet, h: 1}
	n.set.add(c)
	return n
}

// subExp is parse_sub_exp: the current token is '('.
func (p *parser) subExp(nest int) *node {
	cur := p.nsub
	p.nsub++
	p.fetch()
	var tree *node
	if p.tok.typ != tCloseSub {
		tree = p.regExp(nest)
		if p.err == 0 && p.tok.typ != tCloseSub {
			return p.fail(ErrParen)
		}
		if p.err != 0 {
			return nil
		}
	}
	if cur <= 8 {
		p.completed |= 1 << cur
	}
	return p.grow(&node{op: opGroup, idx: cur + 1, sub: orEmpty(tree)})
}

// fetchNumber is fetch_number: the number of an interval up to ',' or '}' (-1: none,
// -2: invalid).
func (p *parser) fetchNumber() int {
	num := -1
	for {
		p.fetch()
		c := p.tok.c
		if p.tok.typ == tEnd {
			return -2
		}
		if p.tok.typ == tCloseDup || c == ',' {
			break
		}
		switch {
		case p.tok.typ != tChar || c < '0' || c > '9' || num == -2:
			num = -2
		case num == -1:
			num = int(c - '0')
		default:
			num = min(dupMax+1, num*10+int(c-'0'))
		}
	}
	return num
}

// dupOp is parse_dup_op: the current token is '*', '+', '?' or '{'.
func (p *parser) dupOp(elem *node) *node {
	var start, end int
	if p.tok.typ == tOpenDup {
		start = p.fetchNumber()
		if start == -1 {
			if p.tok.typ == tChar && p.tok.c == ',' {
				start = 0 // "{,m}" is "{0,m}"
			} else {
				return p.fail(ErrBadBrace) // "{}"
			}
		}
		if start != -2 {
			switch {
			case p.tok.typ == tCloseDup:
				end = start
			case p.tok.typ == tChar && p.tok.c == ',':
				end = p.fetchNumber()
			default:
				end = -2
			}
		}
		if start == -2 || end == -2 {
			if p.tok.typ == tEnd {
				return p.fail(ErrBrace)
			}
			return p.fail(ErrBadBrace)
		}
		if end != -1 && start > end || p.tok.typ != tCloseDup {
			return p.fail(ErrBadBrace)
		}
		if lim := end; lim == -1 && start > dupMax || lim > dupMax {
			return p.fail(ErrSize)
		}
	} else {
		start, end = 0, -1
		if p.tok.typ == tPlus {
			start = 1
		}
		if p.tok.typ == tQuest {
			end = 1
		}
	}
	p.fetch()
	if elem == nil {
		return nil
	}
	return p.grow(&node{op: opRepeat, sub: elem, min: start, max: end})
}

// bracket is parse_bracket_exp: the current token is '[' (already consumed).
func (p *parser) bracket() *node {
	n := &node{op: opSet, h: 1}
	tok, tlen := p.peekBracket()
	if tok.typ == tEnd {
		return p.fail(ErrBadPattern)
	}
	nonMatch := false
	if tok.typ == tNonMatch {
		nonMatch = true
		p.pos += tlen
		tok, tlen = p.peekBracket()
		if tok.typ == tEnd {
			return p.fail(ErrBadPattern)
		}
	}
	if tok.typ == tCloseBracket {
		tok.typ = tChar // a ']' first is an ordinary byte
	}
	first := true
	for {
		start, ok := p.bracketElem(tok, tlen, first)
		if !ok {
			return nil
		}
		first = false
		tok, tlen = p.peekBracket()
		var tok2 token
		var tlen2 int
		isRange := false
		if start.kind != elemClass && start.kind != elemEquiv {
			if tok.typ == tEnd {
				return p.fail(ErrBracket)
			}
			if tok.typ == tRange {
				p.pos += tlen
				tok2, tlen2 = p.peekBracket()
				if tok2.typ == tEnd {
					return p.fail(ErrBracket)
				}
				if tok2.typ == tCloseBracket {
					p.pos -= tlen // a '-' last is an ordinary byte
					tok.typ = tChar
				} else {
					isRange = true
				}
			}
		}
		if isRange {
			end, ok := p.bracketElem(tok2, tlen2, true)
			if !ok {
				return nil
			}
			tok, tlen = p.peekBracket()
			if start.kind == elemClass || start.kind == elemEquiv || end.kind == elemClass || end.kind == elemEquiv {
				return p.fail(ErrRange)
			}
			lo, ok1 := start.byteOf()
			hi, ok2 := end.byteOf()
			if !ok1 || !ok2 {
				return p.fail(ErrCollate)
			}
			if lo > hi {
				return p.fail(ErrRange) // RE_NO_EMPTY_RANGES
			}
			n.set.addRange(lo, hi)
		} else {
			switch start.kind {
			case elemByte:
				n.set.add(start.b)
			case elemEquiv, elemColl:
				b, ok := start.byteOf()
				if !ok {
					return p.fail(ErrCollate)
				}
				n.set.add(b)
			case elemClass:
				cs, ok := cClass(start.name)
				if !ok {
					return p.fail(ErrClass)
				}
				n.set.union(&cs)
			}
		}
		if tok.typ == tEnd {
			return p.fail(ErrBracket)
		}
		if tok.typ == tCloseBracket {
			break
		}
	}
	p.pos += tlen
	if nonMatch {
		n.set.negate()
	}
	return n
}

// peekBracket is peek_token_bracket. RE_BACKSLASH_ESCAPE_IN_LISTS is not set: a
// backslash is an ordinary byte.
func (p *parser) peekBracket() (token, int) {
	if p.pos >= len(p.pat) {
		return token{typ: tEnd}, 0
	}
	c := p.pat[p.pos]
	if c == '[' {
		var c2 byte
		if p.pos+1 < len(p.pat) {
			c2 = p.pat[p.pos+1]
		}
		switch c2 {
		case '.':
			return token{typ: tOpenColl, c: c2}, 2
		case '=':
			return token{typ: tOpenEquiv, c: c2}, 2
		case ':':
			return token{typ: tOpenClass, c: c2}, 2
		}
		return token{typ: tChar, c: c}, 1
	}
	switch c {
	case '-':
		return token{typ: tRange, c: c}, 1
	case ']':
		return token{typ: tCloseBracket, c: c}, 1
	case '^':
		return token{typ: tNonMatch, c: c}, 1
	}
	return token{typ: tChar, c: c}, 1
}

type elemKind uint8

const (
	elemByte elemKind = iota
	elemColl
	elemEquiv
	elemClass
)

type bracketElem struct {
	kind elemKind
	b    byte
	name string
}

// byteOf is the byte a range end or a collating element stands for: in the C locale
// only single bytes are collating elements.
func (e bracketElem) byteOf() (byte, bool) {
	if e.kind == elemByte {
		return e.b, true
	}
	if len(e.name) != 1 {
		return 0, false
	}
	return e.name[0], true
}

// bracketElem is parse_bracket_element.
func (p *parser) bracketElem(tok token, tlen int, acceptHyphen bool) (bracketElem, bool) {
	p.pos += tlen
	switch tok.typ {
	case tOpenColl, tOpenEquiv, tOpenClass:
		return p.bracketSymbol(tok)
	case tRange:
		if !acceptHyphen {
			// A '-' that is neither first, last, nor a range end.
			if t2, _ := p.peekBracket(); t2.typ != tCloseBracket {
				p.fail(ErrRange)
				return bracketElem{}, false
			}
		}
	}
	return bracketElem{kind: elemByte, b: tok.c}, true
}

// bracketSymbol is parse_bracket_symbol: "[:name:]", "[.name.]" or "[=name=]" after
// its opening two bytes.
func (p *parser) bracketSymbol(tok token) (bracketElem, bool) {
	const bufSize = 32 // BRACKET_NAME_BUF_SIZE
	delim := tok.c
	if p.pos >= len(p.pat) {
		p.fail(ErrBracket)
		return bracketElem{}, false
	}
	start := p.pos
	for i := 0; ; i++ {
		if i >= bufSize {
			p.fail(ErrBracket)
			return bracketElem{}, false
		}
		ch := p.pat[p.pos]
		p.pos++
		if p.pos >= len(p.pat) {
			p.fail(ErrBracket)
			return bracketElem{}, false
		}
		if ch == delim && p.pat[p.pos] == ']' {
			break
		}
	}
	name := p.pat[start : p.pos-1]
	p.pos++ // the ']'
	e := bracketElem{name: name}
	switch tok.typ {
	case tOpenColl:
		e.kind = elemColl
	case tOpenEquiv:
		e.kind = elemEquiv
	default:
		e.kind = elemClass
	}
	return e, true
}
