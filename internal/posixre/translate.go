package posixre

import (
	"strconv"
	"strings"
)

// goMaxRepeat is the largest count Go's regexp/syntax accepts in "{n,m}".
const goMaxRepeat = 1000

// translatable reports whether Go's regexp can run the tree with the same meaning:
// everything but back references, the word-edge anchors \< and \> (Go has no
// lookahead), and counts beyond what Go accepts.
func translatable(n *node) bool {
	switch n.op {
	case opBackref:
		return false
	case opAssert:
		return n.assert != aWordFirst && n.assert != aWordLast
	case opRepeat:
		if n.min > goMaxRepeat || n.max > goMaxRepeat {
			return false
		}
		return translatable(n.sub)
	case opGroup:
		return translatable(n.sub)
	case opConcat, opAlt:
		for _, s := range n.subs {
			if !translatable(s) {
				return false
			}
		}
	}
	return true
}

// goSyntax writes the tree as a pattern of Go's regexp/syntax (Perl flags, matched in
// leftmost-longest mode) over a subject of one rune per byte (see latin1). With notbol
// '^' never matches (regexec's REG_NOTBOL); \` still matches at the start.
func goSyntax(n *node, notbol bool) string {
	var b strings.Builder
	writeGo(&b, n, notbol)
	return b.String()
}

func writeGo(b *strings.Builder, n *node, notbol bool) {
	switch n.op {
	case opEmpty:
		b.WriteString(`(?:)`)
	case opSet:
		if c, ok := n.set.single(); ok {
			if isAlnum(c) {
				b.WriteByte(c)
			} else {
				b.WriteString(`\x{` + strconv.FormatInt(int64(c), 16) + `}`)
			}
			return
		}
		n.set.goClass(b)
	case opConcat:
		b.WriteString(`(?:`)
		for _, s := range n.subs {
			writeGo(b, s, notbol)
		}
		b.WriteString(`)`)
	case opAlt:
		b.WriteString(`(?:`)
		for i, s := range n.subs {
			if i > 0 {
				b.WriteByte('|')
			}
			writeGo(b, s, notbol)
		}
		b.WriteString(`)`)
	case opGroup:
		b.WriteByte('(')
		writeGo(b, n.sub, notbol)
		b.WriteByte(')')
	case opRepeat:
		b.WriteString(`(?:`)
		writeGo(b, n.sub, notbol)
		b.WriteString(`)`)
		switch {
		case n.min == 0 && n.max == -1:
			b.WriteByte('*')
		case n.min == 1 && n.max == -1:
			b.WriteByte('+')
		case n.min == 0 && n.max == 1:
			b.WriteByte('?')
		case n.max == -1:
			b.WriteString("{" + strconv.Itoa(n.min) + ",}")
		default:
			b.WriteString("{" + strconv.Itoa(n.min) + "," + strconv.Itoa(n.max) + "}")
		}
	case opAssert:
		switch n.assert {
		case aLineFirst:
			if notbol {
				b.WriteString(`(?:\b\B)`) // never true
			} else {
				b.WriteString(`\A`)
			}
		case aBufFirst:
			b.WriteString(`\A`)
		case aLineLast, aBufLast:
			b.WriteString(`\z`)
		case aWordDelim:
			b.WriteString(`\b`) // Go's word bytes are glibc's in the C locale: [0-9A-Za-z_]
		case aNotWordDelim:
			b.WriteString(`\B`)
		}
	}
}
