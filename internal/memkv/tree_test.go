package memkv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// treeKey returns key i of a small key space whose keys share prefixes of
// every length around the 16 bytes an entry holds as numbers.
func treeKey(r *rand.Rand, space int) []byte {
	i := r.IntN(space)
	switch i % 4 {
	case 0:
		return fmt.Appendf(nil, "%d", i)
	case 1:
		return fmt.Appendf(nil, "prefix-of-sixteen-%06d", i)
	case 2:
		return fmt.Appendf(nil, "%015d", i)
	}
	return fmt.Appendf(nil, "k%d\x00", i)
}

func treeEntry(key []byte, v int) entry {
	kv := append(bytes.Clone(key), fmt.Appendf(nil, "v%d", v)...)
	return mkEntry(kv, len(key))
}

// model is a sorted slice of entries: what a tree must hold.
type model []entry

func (m model) find(key []byte) (int, bool) {
	return slices.BinarySearchFunc(m, key, func(e entry, k []byte) int { return bytes.Compare(e.key(), k) })
}

func (m *model) set(e entry) (entry, bool) {
	i, ok := m.find(e.key())
	if ok {
		old := (*m)[i]
		(*m)[i] = e
		return old, true
	}
	*m = slices.Insert(*m, i, e)
	return entry{}, false
}

func (m *model) delete(key []byte) (entry, bool) {
	i, ok := m.find(key)
	if !ok {
		return entry{}, false
	}
	old := (*m)[i]
	*m = slices.Delete(*m, i, i+1)
	return old, true
}

func (m model) seek(key []byte, inclusive, forward bool) (entry, bool) {
	i, ok := m.find(key)
	if forward {
		if ok && !inclusive {
			i++
		}
		if i < len(m) {
			return m[i], true
		}
		return entry{}, false
	}
	if ok && inclusive {
		return m[i], true
	}
	if i > 0 {
		return m[i-1], true
	}
	return entry{}, false
}

// checkTree checks t's structure (order, sizes, depth, its count) and that it
// holds exactly m.
func checkTree(t *testing.T, tr *tree, m model) {
	t.Helper()
	var got []entry
	depth := -1
	var walk func(n *node, d int, root bool)
	walk = func(n *node, d int, root bool) {
		if len(n.items) == 0 || len(n.items) > maxItems {
			t.Fatalf("node of %d entries", len(n.items))
		}
		if n.kids == nil {
			if depth == -1 {
				depth = d
			} else if depth != d {
				t.Fatalf("leaves at depths %d and %d", depth, d)
			}
			got = append(got, n.items...)
			return
		}
		if len(n.kids) != len(n.items)+1 {
			t.Fatalf("%d entries, %d children", len(n.items), len(n.kids))
		}
		for i, k := range n.kids {
			walk(k, d+1, false)
			if i < len(n.items) {
				got = append(got, n.items[i])
			}
		}
	}
	if tr.root != nil {
		walk(tr.root, 0, true)
	}
	if len(got) != len(m) || tr.Len() != len(m) {
		t.Fatalf("tree holds %d entries, counts %d, want %d", len(got), tr.Len(), len(m))
	}
	for i := range got {
		if i > 0 && !less(got[i-1], got[i]) {
			t.Fatalf("out of order at %d: %q, %q", i, got[i-1].key(), got[i].key())
		}
		if !bytes.Equal(got[i].kv(), m[i].kv()) {
			t.Fatalf("entry %d: %q, want %q", i, got[i].kv(), m[i].kv())
		}
	}
}

// TestTreeModel runs random writes, reads and snapshots against a sorted
// slice; a snapshot must keep what it held however the tree changes after it
// (and the tree however the snapshot is read).
func TestTreeModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			space := []int{40, 400, 3000, 10000}[seed]
			tr, m := newTree(), model{}
			type snap struct {
				tr *tree
				m  model
			}
			var snaps []snap
			for step := range 25000 {
				key := treeKey(r, space)
				switch op := r.IntN(20); {
				case op < 9:
					e := treeEntry(key, step)
					old, ok := tr.set(e)
					wold, wok := m.set(e)
					if ok != wok || !bytes.Equal(old.kv(), wold.kv()) {
						t.Fatalf("step %d: set %q replaced %v %q, want %v %q", step, key, ok, old.kv(), wok, wold.kv())
					}
				case op < 15:
					old, ok := tr.delete(probe(key))
					wold, wok := m.delete(key)
					if ok != wok || !bytes.Equal(old.kv(), wold.kv()) {
						t.Fatalf("step %d: delete %q: %v %q, want %v %q", step, key, ok, old.kv(), wok, wold.kv())
					}
				case op < 19:
					inclusive, forward := r.IntN(2) == 0, r.IntN(2) == 0
					got, ok := tr.seek(probe(key), inclusive, forward)
					want, wok := m.seek(key, inclusive, forward)
					if ok != wok || !bytes.Equal(got.kv(), want.kv()) {
						t.Fatalf("step %d: seek %q inclusive %v forward %v: %v %q, want %v %q", step, key, inclusive, forward, ok, got.kv(), wok, want.kv())
					}
					g, gok := tr.get(probe(key))
					i, iok := m.find(key)
					if gok != iok || (iok && !bytes.Equal(g.kv(), m[i].kv())) {
						t.Fatalf("step %d: get %q: %v %q", step, key, gok, g.kv())
					}
				default:
					if len(snaps) < 3 {
						snaps = append(snaps, snap{tr.clone(), slices.Clone(m)})
					} else {
						s := snaps[0]
						checkTree(t, s.tr, s.m)
						snaps = snaps[1:]
					}
				}
				if step%5000 == 0 {
					checkTree(t, tr, m)
				}
			}
			checkTree(t, tr, m)
			for _, s := range snaps {
				checkTree(t, s.tr, s.m)
			}
			// ascend from every kind of start, and first/last
			for range 200 {
				key := treeKey(r, space)
				var got []entry
				limit := r.IntN(50)
				tr.ascend(probe(key), false, func(e entry) bool {
					got = append(got, e)
					return len(got) < limit
				})
				i, _ := m.find(key)
				want := m[i:min(i+limit, len(m))]
				if limit == 0 {
					want = m[i:min(i+1, len(m))]
				}
				if len(got) != len(want) {
					t.Fatalf("ascend from %q: %d entries, want %d", key, len(got), len(want))
				}
				for j := range got {
					if !bytes.Equal(got[j].kv(), want[j].kv()) {
						t.Fatalf("ascend from %q: entry %d %q, want %q", key, j, got[j].kv(), want[j].kv())
					}
				}
			}
			var all int
			tr.ascend(entry{}, true, func(entry) bool { all++; return true })
			if all != len(m) {
				t.Fatalf("ascend over all: %d, want %d", all, len(m))
			}
			if f, ok := tr.first(); len(m) > 0 && (!ok || !bytes.Equal(f.kv(), m[0].kv())) {
				t.Fatalf("first %q, want %q", f.kv(), m[0].kv())
			}
			if l, ok := tr.last(); len(m) > 0 && (!ok || !bytes.Equal(l.kv(), m[len(m)-1].kv())) {
				t.Fatalf("last %q, want %q", l.kv(), m[len(m)-1].kv())
			}
			// emptied one by one
			for len(m) > 0 {
				e := m[r.IntN(len(m))]
				if _, ok := tr.delete(e); !ok {
					t.Fatalf("delete %q: absent", e.key())
				}
				m.delete(e.key())
			}
			checkTree(t, tr, m)
			if tr.root != nil {
				t.Fatal("an empty tree keeps a root")
			}
		})
	}
}

// TestTreeOrderedLoadsFill checks that a load in key order, ascending or
// descending, leaves the nodes nearly full (a middle split leaves them half
// full), and that a random load still gives the usual B-tree's.
func TestTreeOrderedLoadsFill(t *testing.T) {
	const n = 100000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%08d", i)
	}
	fill := func(tr *tree) float64 {
		var nodes, items int
		var walk func(*node)
		walk = func(nd *node) {
			nodes++
			items += len(nd.items)
			for _, k := range nd.kids {
				walk(k)
			}
		}
		walk(tr.root)
		return float64(items) / float64(nodes*maxItems)
	}
	for _, order := range []string{"ascending", "descending", "random"} {
		tr := newTree()
		m := model{}
		perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
		for i := range n {
			j := i
			switch order {
			case "descending":
				j = n - 1 - i
			case "random":
				j = perm[i]
			}
			tr.set(treeEntry(keys[j], j))
		}
		for i := range n {
			m = append(m, treeEntry(keys[i], i))
		}
		checkTree(t, tr, m)
		f := fill(tr)
		t.Logf("%s: nodes %.0f%% full", order, 100*f)
		want := 0.95
		if order == "random" {
			want = 0.6
		}
		if f < want {
			t.Errorf("%s load: nodes %.0f%% full, want at least %.0f%%", order, 100*f, 100*want)
		}
	}
}
