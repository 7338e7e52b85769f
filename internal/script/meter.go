package script

import (
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// Approximate sizes, in bytes, of gopher-lua's objects on the Go heap (headers, slice
// and map overhead), used to estimate what a state holds.
const (
	sizeStr      = 16
	sizeTable    = 96
	sizeEntry    = 40
	sizeFunction = 64
	sizeUpvalue  = 48
	sizeProto    = 160
	sizeUserData = 48
	sizeThread   = 4096
	sizeValue    = 16
	longString   = 64 // strings at least this long are counted once, however often referenced
)

// measure estimates the memory the state holds: everything reachable from its
// globals, its registry and the stacks of its threads (named locals of every active
// frame, the registers of the running one), each table, function, string and
// coroutine counted once. It stops as soon as the total exceeds limit and then returns
// a value above limit. It must run on the goroutine that runs the state (between VM
// instructions or between calls).
func (st *state) measure(limit int64) int64 {
	m := meter{limit: limit, seen: make(map[unsafe.Pointer]struct{})}
	L := st.L
	m.value(L.G.Global)
	m.value(L.G.Registry)
	m.value(L)
	if cur := L.G.CurrentThread; cur != nil {
		m.value(cur)
	}
	m.run()
	return m.total
}

type meter struct {
	limit int64
	total int64
	seen  map[unsafe.Pointer]struct{}
	todo  []lua.LValue
}

func (m *meter) over() bool { return m.total > m.limit }

// first reports whether p is seen for the first time.
func (m *meter) first(p unsafe.Pointer) bool {
	if _, ok := m.seen[p]; ok {
		return false
	}
	m.seen[p] = struct{}{}
	return true
}

func (m *meter) value(v lua.LValue) {
	if v != nil && v != lua.LNil {
		m.todo = append(m.todo, v)
	}
}

func (m *meter) run() {
	for len(m.todo) > 0 && !m.over() {
		v := m.todo[len(m.todo)-1]
		m.todo = m.todo[:len(m.todo)-1]
		switch x := v.(type) {
		case lua.LString:
			n := len(x)
			if n >= longString && !m.first(unsafe.Pointer(unsafe.StringData(string(x)))) {
				continue
			}
			m.total += sizeStr + int64(n)
		case *lua.LTable:
			if !m.first(unsafe.Pointer(x)) {
				continue
			}
			m.total += sizeTable
			x.ForEach(func(k, val lua.LValue) {
				m.total += sizeEntry
				m.value(k)
				m.value(val)
			})
			m.value(x.Metatable)
		case *lua.LFunction:
			if !m.first(unsafe.Pointer(x)) {
				continue
			}
			m.total += sizeFunction + int64(len(x.Upvalues))*sizeUpvalue
			for _, uv := range x.Upvalues {
				if uv != nil {
					m.value(uv.Value())
				}
			}
			if x.Env != nil {
				m.value(x.Env)
			}
			if x.Proto != nil {
				m.proto(x.Proto)
			}
		case *lua.LUserData:
			if !m.first(unsafe.Pointer(x)) {
				continue
			}
			m.total += sizeUserData
			m.value(x.Metatable)
			if x.Env != nil {
				m.value(x.Env)
			}
		case *lua.LState:
			if !m.first(unsafe.Pointer(x)) {
				continue
			}
			m.total += sizeThread
			m.thread(x)
		}
	}
}

func (m *meter) proto(p *lua.FunctionProto) {
	if !m.first(unsafe.Pointer(p)) {
		return
	}
	m.total += sizeProto + 4*int64(len(p.Code)) + sizeValue*int64(len(p.Constants))
	for _, c := range p.Constants {
		m.value(c)
	}
	for _, sub := range p.FunctionPrototypes {
		m.proto(sub)
	}
}

// thread adds what the stack of th references: the function and named locals of each
// active frame and the registers of the current one.
func (m *meter) thread(th *lua.LState) {
	defer func() {
		// A closed thread has no stack left to look at.
		_ = recover()
	}()
	if th.Env != nil {
		m.value(th.Env)
	}
	for level := 0; ; level++ {
		dbg, ok := th.GetStack(level)
		if !ok {
			break
		}
		if fn, err := th.GetInfo("f", dbg, lua.LNil); err == nil {
			m.value(fn)
		}
		for n := 1; ; n++ {
			name, v := th.GetLocal(dbg, n)
			if name == "" {
				break
			}
			m.total += sizeValue
			m.value(v)
		}
	}
	for i := 1; i <= th.GetTop(); i++ {
		m.total += sizeValue
		m.value(th.Get(i))
	}
}
