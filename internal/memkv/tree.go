package memkv

import "sync/atomic"

// tree is the ordered index of a DB's records: a B-tree of entries, nodes of up
// to maxItems, copy-on-write so that a snapshot costs O(1).
//
// It is memkv's own, not a general B-tree library's, for two reasons:
//   - Splits follow the insertion: a node that overflows at its end (a load in
//     ascending key order) keeps maxItems-1 entries and passes on only the new
//     one, and one that overflows at its start (a descending load) the mirror
//     image; any other overflow splits in the middle. A general B-tree splits in
//     the middle always, which leaves an ordered load's nodes half full: a
//     quarter of an on-memory database's memory at 1 M keys of 100 bytes.
//   - Its search compares the entries' key prefixes in line and calls less only
//     when they are equal, where a generic tree calls a function value for every
//     comparison.
//
// Nodes that may be small (1 entry, after an uneven split) are harmless:
// removal merges or refills any child with minItems entries or fewer before it
// descends into it, whatever made the child small.
//
// Copy-on-write: every node carries the generation of the tree that made it,
// and a tree changes only nodes of its own generation, copying any other node
// (and re-linking the copy from its own parent) before it changes it. clone
// gives the tree and its copy new generations, so that neither changes a node
// they share.
type tree struct {
	root *node
	n    int    // entries
	gen  uint64 // the generation of the nodes this tree may change in place
}

type node struct {
	items []entry // sorted; cap maxItems+1, room for one overflowing entry
	kids  []*node // nil in a leaf; else len(items)+1, cap maxItems+2
	gen   uint64
}

const (
	maxItems = 2*degree - 1
	minItems = degree - 1
)

// generations hands out copy-on-write generations.
var generations atomic.Uint64

func newTree() *tree { return &tree{gen: generations.Add(1)} }

func (t *tree) newNode(leaf bool) *node {
	n := &node{items: make([]entry, 0, maxItems+1), gen: t.gen}
	if !leaf {
		n.kids = make([]*node, 0, maxItems+2)
	}
	return n
}

// mutable returns n, or a copy of it that t may change.
func (t *tree) mutable(n *node) *node {
	if n.gen == t.gen {
		return n
	}
	c := t.newNode(n.kids == nil)
	c.items = append(c.items, n.items...)
	if n.kids != nil {
		c.kids = append(c.kids, n.kids...)
	}
	return c
}

// mutableKid returns n's i'th child, which t may change (n is t's already).
func (t *tree) mutableKid(n *node, i int) *node {
	k := t.mutable(n.kids[i])
	n.kids[i] = k
	return k
}

// clone returns a copy of t: O(1), the nodes shared until either changes them.
func (t *tree) clone() *tree {
	c := &tree{root: t.root, n: t.n, gen: generations.Add(1)}
	t.gen = generations.Add(1)
	return c
}

// Len returns the number of entries.
func (t *tree) Len() int { return t.n }

// search returns the index of the first item of items not less than e, and
// whether that item's key equals e's.
func search(items []entry, e entry) (int, bool) {
	lo, hi := 0, len(items)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		it := &items[m]
		// less, with the comparison of the key prefixes (which settles nearly
		// every pair) written out here: less itself is too large to inline.
		var before bool
		switch {
		case it.hi != e.hi:
			before = it.hi < e.hi
		case it.lo != e.lo:
			before = it.lo < e.lo
		default:
			before = lessPast(*it, e)
		}
		if before {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(items) && !less(e, items[lo])
}

// get returns the entry with e's key.
func (t *tree) get(e entry) (entry, bool) {
	for n := t.root; n != nil; {
		i, found := search(n.items, e)
		if found {
			return n.items[i], true
		}
		if n.kids == nil {
			break
		}
		n = n.kids[i]
	}
	return entry{}, false
}

// set stores e, replacing and returning the entry with its key, if any.
func (t *tree) set(e entry) (old entry, replaced bool) {
	if t.root == nil {
		t.root = t.newNode(true)
		t.root.items = append(t.root.items, e)
		t.n = 1
		return entry{}, false
	}
	t.root = t.mutable(t.root)
	old, replaced, split, median, right := t.insert(t.root, e)
	if split {
		root := t.newNode(false)
		root.items = append(root.items, median)
		root.kids = append(root.kids, t.root, right)
		t.root = root
	}
	if !replaced {
		t.n++
	}
	return old, replaced
}

// insert stores e under n (which t may change). When n overflows it splits:
// n keeps the entries before median, right takes those after it.
func (t *tree) insert(n *node, e entry) (old entry, replaced, split bool, median entry, right *node) {
	i, found := search(n.items, e)
	if found {
		old = n.items[i]
		n.items[i] = e
		return old, true, false, entry{}, nil
	}
	if n.kids != nil {
		k := t.mutableKid(n, i)
		var ksplit bool
		var kmedian entry
		var kright *node
		old, replaced, ksplit, kmedian, kright = t.insert(k, e)
		if !ksplit {
			return old, replaced, false, entry{}, nil
		}
		e = kmedian
		n.kids = insertAt(n.kids, i+1, kright)
	}
	n.items = insertAt(n.items, i, e)
	if len(n.items) <= maxItems {
		return old, replaced, false, entry{}, nil
	}
	// Where the new entry went decides the split: at the end, n stays full;
	// at the start, right does; elsewhere they share.
	var m int
	switch i {
	case len(n.items) - 1:
		m = len(n.items) - 2
	case 0:
		m = 1
	default:
		m = len(n.items) / 2
	}
	median = n.items[m]
	right = t.newNode(n.kids == nil)
	right.items = append(right.items, n.items[m+1:]...)
	clear(n.items[m:])
	n.items = n.items[:m]
	if n.kids != nil {
		right.kids = append(right.kids, n.kids[m+1:]...)
		clear(n.kids[m+1:])
		n.kids = n.kids[:m+1]
	}
	return old, replaced, true, median, right
}

func insertAt[T any](s []T, i int, v T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

func removeAt[T any](s []T, i int) ([]T, T) {
	v := s[i]
	copy(s[i:], s[i+1:])
	var zero T
	s[len(s)-1] = zero
	return s[:len(s)-1], v
}

// What remove takes out: the entry with a key, or the largest.
const (
	removeKey = iota
	removeMax
)

// delete removes and returns the entry with e's key.
func (t *tree) delete(e entry) (entry, bool) {
	if t.root == nil {
		return entry{}, false
	}
	t.root = t.mutable(t.root)
	old, ok := t.remove(t.root, e, removeKey)
	if len(t.root.items) == 0 {
		if t.root.kids == nil {
			t.root = nil
		} else {
			t.root = t.root.kids[0]
		}
	}
	if ok {
		t.n--
	}
	return old, ok
}

// remove takes e (or, with removeMax, the largest entry) out of the subtree of n,
// which t may change. Before it descends into a child it gives the child more
// than minItems entries, so that the child can lose one.
func (t *tree) remove(n *node, e entry, what int) (entry, bool) {
	var i int
	var found bool
	if what == removeMax {
		if n.kids == nil {
			if len(n.items) == 0 {
				return entry{}, false
			}
			var out entry
			n.items, out = removeAt(n.items, len(n.items)-1)
			return out, true
		}
		i = len(n.items)
	} else {
		i, found = search(n.items, e)
		if n.kids == nil {
			if !found {
				return entry{}, false
			}
			var out entry
			n.items, out = removeAt(n.items, i)
			return out, true
		}
	}
	if len(n.kids[i].items) <= minItems {
		t.grow(n, i)
		return t.remove(n, e, what) // the entries moved: search again
	}
	k := t.mutableKid(n, i)
	if found {
		// The largest entry below the one removed takes its place.
		out := n.items[i]
		n.items[i], _ = t.remove(k, entry{}, removeMax)
		return out, true
	}
	return t.remove(k, e, what)
}

// grow gives n's i'th child more than minItems entries: one from a sibling
// that can spare it, else by merging the child with a sibling and the entry
// between them.
func (t *tree) grow(n *node, i int) {
	switch {
	case i > 0 && len(n.kids[i-1].items) > minItems:
		k, from := t.mutableKid(n, i), t.mutableKid(n, i-1)
		var stolen entry
		from.items, stolen = removeAt(from.items, len(from.items)-1)
		k.items = insertAt(k.items, 0, n.items[i-1])
		n.items[i-1] = stolen
		if from.kids != nil {
			var kid *node
			from.kids, kid = removeAt(from.kids, len(from.kids)-1)
			k.kids = insertAt(k.kids, 0, kid)
		}
	case i < len(n.items) && len(n.kids[i+1].items) > minItems:
		k, from := t.mutableKid(n, i), t.mutableKid(n, i+1)
		var stolen entry
		from.items, stolen = removeAt(from.items, 0)
		k.items = append(k.items, n.items[i])
		n.items[i] = stolen
		if from.kids != nil {
			var kid *node
			from.kids, kid = removeAt(from.kids, 0)
			k.kids = append(k.kids, kid)
		}
	default:
		if i >= len(n.items) {
			i--
		}
		k := t.mutableKid(n, i)
		var mid entry
		var gone *node
		n.items, mid = removeAt(n.items, i)
		n.kids, gone = removeAt(n.kids, i+1)
		k.items = append(k.items, mid)
		k.items = append(k.items, gone.items...)
		if k.kids != nil {
			k.kids = append(k.kids, gone.kids...)
		}
	}
}

// ascend calls fn with every entry not less than from (all with all set), in
// order, until fn returns false.
func (t *tree) ascend(from entry, all bool, fn func(entry) bool) {
	if t.root != nil {
		ascendNode(t.root, from, all, fn)
	}
}

func ascendNode(n *node, from entry, all bool, fn func(entry) bool) bool {
	i := 0
	if !all {
		var found bool
		i, found = search(n.items, from)
		if found {
			// Nothing below kids[i] is as large as from: start at the entry.
			if !fn(n.items[i]) {
				return false
			}
			i++
			all = true
		}
	}
	for ; i <= len(n.items); i++ {
		if n.kids != nil && !ascendNode(n.kids[i], from, all, fn) {
			return false
		}
		all = true // every later child is past from
		if i < len(n.items) && !fn(n.items[i]) {
			return false
		}
	}
	return true
}

// seek returns the nearest entry to e: forward, the first not less than e
// (greater than e unless inclusive); backward, the last less than e (or
// equal, if inclusive).
func (t *tree) seek(e entry, inclusive, forward bool) (entry, bool) {
	var best entry
	ok := false
	for n := t.root; n != nil; {
		i, found := search(n.items, e)
		if found && inclusive {
			return n.items[i], true
		}
		var next int
		if forward {
			j := i
			if found {
				j++ // past the equal entry
			}
			if j < len(n.items) {
				best, ok = n.items[j], true
			}
			next = j
		} else {
			if i > 0 {
				best, ok = n.items[i-1], true
			}
			next = i
		}
		if n.kids == nil {
			break
		}
		n = n.kids[next]
	}
	return best, ok
}

// first and last return the smallest and the largest entries.
func (t *tree) first() (entry, bool) {
	n := t.root
	if n == nil {
		return entry{}, false
	}
	for n.kids != nil {
		n = n.kids[0]
	}
	return n.items[0], true
}

func (t *tree) last() (entry, bool) {
	n := t.root
	if n == nil {
		return entry{}, false
	}
	for n.kids != nil {
		n = n.kids[len(n.kids)-1]
	}
	return n.items[len(n.items)-1], true
}
