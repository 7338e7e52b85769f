package ktserver

import "github.com/ktdproject/ktd/internal/store"

// Cursor procedures. A cursor is resolved (and created when its id is new)
// before dispatch; a call without a usable cursor is "no such cursor".

func (r *call) needCursor() (*cursor, error) {
	if r.cur == nil {
		return nil, errNoCursor
	}
	return r.cur, nil
}

func procCurJump(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	if k, ok := r.in["key"]; ok {
		return cur.c.Jump([]byte(k))
	}
	return cur.c.JumpFirst()
}

func procCurJumpBack(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	if k, ok := r.in["key"]; ok {
		return cur.c.JumpBack([]byte(k))
	}
	return cur.c.JumpLast()
}

func procCurStep(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	return cur.c.Step()
}

func procCurStepBack(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	r.s.stats.misc.Add(1)
	return cur.c.StepBack()
}

func procCurSetValue(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	v, ok := r.in["value"]
	if !ok {
		return errInvalid
	}
	return r.countSet(cur.c.SetValue([]byte(v), r.xt(), r.has("step")))
}

func procCurRemove(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	return r.countRemove(cur.c.Remove())
}

// curGet makes cur_get_key, cur_get_value and cur_get: read the current
// record (stepping after it with "step") and output some of its fields.
func curGet(out func(r *call, rec store.Record)) procedure {
	return func(r *call) error {
		cur, err := r.needCursor()
		if err != nil {
			return err
		}
		rec, err := cur.c.Get(r.has("step"))
		if err := r.countGet(err); err != nil {
			return err
		}
		out(r, rec)
		return nil
	}
}

func outKey(r *call, rec store.Record)   { r.set("key", string(rec.Key)) }
func outValue(r *call, rec store.Record) { r.set("value", string(rec.Value)) }

func outRecord(r *call, rec store.Record) {
	r.set("key", string(rec.Key))
	r.set("value", string(rec.Value))
	r.setXT(rec.XT)
}

func procCurSeize(r *call) error {
	cur, err := r.needCursor()
	if err != nil {
		return err
	}
	rec, err := cur.c.Seize()
	if err := r.countGet(err); err != nil {
		return err
	}
	outRecord(r, rec)
	return nil
}
