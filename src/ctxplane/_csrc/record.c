/* One event of the X-Trace DAG, recorded in C: the twin of ctxplane/tracing/recorder.py's
 * record_pure (the reference), wired by configure_record.
 *
 * record(typ, label, attrs=None, extra=None, in_span=None, _read_b=None) does what the
 * reference does, in the same order and with the same random draws: read the parents from
 * the active baggage's X-Trace bag, draw an event id, set the bag's parent set to it, append
 * the event tuple to the buffer. It calls back into Python only where the reference makes
 * something new - a frame for code that has no execution yet or is a lazy task's first
 * event (transit's own_frame), an execution unit (new_eu) - and hands the whole call to the
 * reference, before changing anything, when the bag is not in the simple form the recorder
 * writes or names a trace this process has not learnt yet. */
#include "speedups.h"
#include <structmember.h>

/* the Python pieces (configure_record) */
static PyObject *r_join_pure, *s_join;
static PyObject *r_rec, *r_frame_var, *r_empty_frame, *r_eu_var, *r_span_var, *r_header,
    *r_f1, *r_f2, *r_xtrace, *r_rand, *r_now, *r_own_frame, *r_new_eu, *r_pure, *r_transit;
static PyTypeObject *r_baggage_type, *r_frame_type;
static PyObject *s_buf, *s_capacity, *s_dropped, *s_traces, *s_append, *s_id, *s_creator,
    *s_running_loop, *s_task_of, *s_lazy_type, *n64, *n_one, *n_minus2;

/* slot offsets of Baggage, Frame and EU (their __slots__ members) */
static Py_ssize_t o_b_atoms, o_b_bytes, o_b_bags, o_b_segments, o_b_heads, o_b_marker;
static Py_ssize_t o_f_baggage, o_f_ex;
static Py_ssize_t o_eu_ex, o_eu_last_b, o_eu_last_id, o_eu_head, o_eu_tail, o_eu_seq, o_eu_task,
    o_eu_prefix;
static PyTypeObject *r_eu_type;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* Replace the slot at `off` of `o` with `v` (a new reference, stolen). */
static void
slot_set(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
}

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL)
        return -1;
    if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        Py_DECREF(d);
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", type->tp_name, name);
        return -1;
    }
    *off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    return 0;
}

/* A Baggage of `atoms` (stolen) without its __init__: the slots __init__ would set. */
static PyObject *
new_baggage(PyObject *atoms)
{
    PyObject *b = r_baggage_type->tp_alloc(r_baggage_type, 0);
    if (b == NULL) {
        Py_DECREF(atoms);
        return NULL;
    }
    SLOT(b, o_b_atoms) = atoms;
    SLOT(b, o_b_bytes) = Py_NewRef(Py_None); /* (atoms are never empty here) */
    SLOT(b, o_b_bags) = Py_NewRef(Py_None);
    SLOT(b, o_b_segments) = Py_NewRef(Py_None);
    SLOT(b, o_b_heads) = Py_NewRef(Py_None);
    SLOT(b, o_b_marker) = Py_NewRef(n_minus2);
    return b;
}

static PyObject *
new_frame(PyObject *baggage, PyObject *ex)
{
    PyObject *f = r_frame_type->tp_alloc(r_frame_type, 0);
    if (f == NULL)
        return NULL;
    SLOT(f, o_f_baggage) = Py_NewRef(baggage);
    SLOT(f, o_f_ex) = Py_NewRef(ex);
    return f;
}

/* recorder._keep_parsed: nb keeps the bags b parsed, but the X-Trace bag. */
static int
keep_parsed(PyObject *b, PyObject *nb)
{
    PyObject *cache = SLOT(b, o_b_bags);
    if (cache == NULL || !PyDict_Check(cache) || PyDict_GET_SIZE(cache) == 0)
        return 0;
    PyObject *kept = PyDict_Copy(cache);
    if (kept == NULL)
        return -1;
    if (PyDict_DelItem(kept, r_xtrace) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            Py_DECREF(kept);
            return -1;
        }
        PyErr_Clear();
    }
    slot_set(nb, o_b_bags, kept);
    return 0;
}

static int
atom_eq(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyBytes_GET_SIZE(a);
    return n == PyBytes_GET_SIZE(b) && memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), n) == 0;
}

/* Where `header` first is in atoms[from:]: its index, -1 when absent, -2 when an atom on the
 * way is not a bytes object (the reference then decides). */
static Py_ssize_t
find_atom(PyObject *atoms, Py_ssize_t from, PyObject *header)
{
    Py_ssize_t n = PyTuple_GET_SIZE(atoms);
    for (Py_ssize_t i = from; i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(atoms, i);
        if (!PyBytes_CheckExact(a))
            return -2;
        if (atom_eq(a, header))
            return i;
    }
    return -1;
}

/* The 9-byte data atom of a fixed64 value. */
static PyObject *
u64_atom(unsigned long long v)
{
    char buf[9];
    buf[0] = 0;
    for (int i = 8; i >= 1; i--) {
        buf[i] = (char)(v & 0xff);
        v >>= 8;
    }
    return PyBytes_FromStringAndSize(buf, 9);
}

static unsigned long long
atom_u64(PyObject *a)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(a) + 1;
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int
is_u64_atom(PyObject *a)
{
    return PyBytes_CheckExact(a) && PyBytes_GET_SIZE(a) == 9 && PyBytes_AS_STRING(a)[0] == 0;
}

/* xtrace.read for the simple form: 1 with *task, *parents (new), *start, *end set; 0 when
 * the bag is absent or not in the simple form (the reference then decides); -1 on error. */
static int
read_simple(PyObject *atoms, unsigned long long *task, PyObject **parents, Py_ssize_t *start,
            Py_ssize_t *end)
{
    Py_ssize_t n = PyTuple_GET_SIZE(atoms), s = find_atom(atoms, 0, r_header), e;
    if (s < 0)
        return 0;
    for (e = s + 1; e < n; e++) {
        PyObject *a = PyTuple_GET_ITEM(atoms, e);
        if (!PyBytes_CheckExact(a))
            return 0;
        if (PyBytes_GET_SIZE(a) && ((unsigned char)PyBytes_AS_STRING(a)[0] & 0xFA) == 0xF8)
            break;
    }
    Py_ssize_t len = e - s;
    if (len < 3 || !atom_eq(PyTuple_GET_ITEM(atoms, s + 1), r_f1))
        return 0;
    if (len != 3 && !(len >= 5 && atom_eq(PyTuple_GET_ITEM(atoms, s + 3), r_f2)))
        return 0;
    if (find_atom(atoms, e, r_header) != -1) /* a repeated header: the typed bag reads it */
        return 0;
    PyObject *t = PyTuple_GET_ITEM(atoms, s + 2);
    if (!is_u64_atom(t))
        return 0;
    Py_ssize_t np = len > 3 ? len - 4 : 0;
    for (Py_ssize_t i = 0; i < np; i++)
        if (!is_u64_atom(PyTuple_GET_ITEM(atoms, s + 4 + i)))
            return 0;
    PyObject *ps = PyTuple_New(np);
    if (ps == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(atom_u64(PyTuple_GET_ITEM(atoms, s + 4 + i)));
        if (v == NULL) {
            Py_DECREF(ps);
            return -1;
        }
        PyTuple_SET_ITEM(ps, i, v);
    }
    *task = atom_u64(t);
    *parents = ps;
    *start = s;
    *end = e;
    return 1;
}

/* What xtrace.read returned, as read_simple gives it: 1 when it is a simple-form segment
 * (start >= 0) of the expected shape, 0 when the reference is to take it, -1 on error. */
static int
read_given(PyObject *x, unsigned long long *task, PyObject **parents, Py_ssize_t *start,
           Py_ssize_t *end)
{
    if (!PyTuple_CheckExact(x) || PyTuple_GET_SIZE(x) != 3)
        return 0;
    PyObject *t = PyTuple_GET_ITEM(x, 0), *ps = PyTuple_GET_ITEM(x, 1),
             *seg = PyTuple_GET_ITEM(x, 2);
    if (!PyLong_CheckExact(t) || !PyTuple_CheckExact(ps) || !PyTuple_CheckExact(seg) ||
        PyTuple_GET_SIZE(seg) != 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(seg, 0)) ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(seg, 1)))
        return 0;
    Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(seg, 0));
    Py_ssize_t e = PyLong_AsSsize_t(PyTuple_GET_ITEM(seg, 1));
    unsigned long long v = PyLong_AsUnsignedLongLong(t);
    if (PyErr_Occurred())
        return -1;
    if (s < 0)
        return 0;
    *task = v;
    *parents = Py_NewRef(ps);
    *start = s;
    *end = e;
    return 1;
}

/* The frame of the running execution, as transit's own_frame gives it (a new reference):
 * `f` itself in the common case, else own_frame() (which makes and sets a new one). */
static PyObject *
own_frame(PyObject *f)
{
    PyObject *ex = SLOT(f, o_f_ex);
    PyObject *g = PyModule_GetDict(r_transit); /* borrowed */
    PyObject *lazy = PyDict_GetItemWithError(g, s_lazy_type);
    if (lazy == NULL && PyErr_Occurred())
        return NULL;
    if (lazy != NULL && lazy != Py_None) {
        PyObject *running = PyDict_GetItemWithError(g, s_running_loop);
        PyObject *task_of = running ? PyDict_GetItemWithError(g, s_task_of) : NULL;
        if (task_of == NULL)
            return PyErr_Occurred() ? NULL : PyObject_CallNoArgs(r_own_frame);
        PyObject *loop = PyObject_CallNoArgs(running);
        if (loop == NULL)
            return NULL;
        if (loop != Py_None) {
            PyObject *t = PyObject_CallOneArg(task_of, loop);
            Py_DECREF(loop);
            if (t == NULL)
                return NULL;
            if ((PyObject *)Py_TYPE(t) == lazy && ex != t) {
                PyObject *creator = PyObject_GetAttr(t, s_creator);
                Py_DECREF(t);
                if (creator == NULL)
                    return NULL;
                Py_DECREF(creator);
                if (creator == ex) /* a lazy task's first own frame: the reference makes it */
                    return PyObject_CallNoArgs(r_own_frame);
            }
            else
                Py_DECREF(t);
        }
        else
            Py_DECREF(loop);
    }
    if (ex == Py_None)
        return PyObject_CallNoArgs(r_own_frame);
    return Py_NewRef(f);
}

static PyObject *
call_pure(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return PyObject_Vectorcall(r_pure, args, (size_t)nargs, kwnames);
}

/* The buffer when it has room (a new reference); NULL with no error when it is full (the
 * drop is counted), NULL with an error on failure. */
static PyObject *
buffer_with_room(void)
{
    PyObject *buf = PyObject_GetAttr(r_rec, s_buf), *cap;
    if (buf == NULL)
        return NULL;
    if ((cap = PyObject_GetAttr(r_rec, s_capacity)) == NULL)
        goto fail;
    Py_ssize_t n = PyObject_Size(buf), c = PyLong_AsSsize_t(cap);
    Py_DECREF(cap);
    if ((n < 0 || c == -1) && PyErr_Occurred())
        goto fail;
    if (n < c)
        return buf;
    Py_DECREF(buf);
    PyObject *d = PyObject_GetAttr(r_rec, s_dropped), *d1;
    if (d == NULL)
        return NULL;
    d1 = PyNumber_Add(d, n_one);
    Py_DECREF(d);
    if (d1 == NULL || PyObject_SetAttr(r_rec, s_dropped, d1) < 0) {
        Py_XDECREF(d1);
        return NULL;
    }
    Py_DECREF(d1);
    return NULL;
fail:
    Py_DECREF(buf);
    return NULL;
}

static PyObject *
record(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)self;
    if (r_pure == NULL)
        return PyErr_Format(PyExc_RuntimeError, "record: configure_record was not called");
    if (kwnames != NULL || nargs < 2 || nargs > 6)
        return call_pure(args, nargs, kwnames);
    PyObject *typ = args[0], *label = args[1];
    PyObject *attrs = nargs > 2 ? args[2] : Py_None, *extra = nargs > 3 ? args[3] : Py_None;
    PyObject *in_span = nargs > 4 ? args[4] : Py_None, *read_b = nargs > 5 ? args[5] : Py_None;
    PyObject *f0 = NULL, *f = NULL, *eu = NULL, *buf = NULL, *parents = NULL, *nb = NULL;
    PyObject *eid_o = NULL, *result = NULL, *task_o = NULL, *item = NULL, *atoms_new = NULL;

    if (PyContextVar_Get(r_frame_var, r_empty_frame, &f0) < 0)
        return NULL;
    if (Py_TYPE(f0) != r_frame_type || Py_TYPE(SLOT(f0, o_f_baggage)) != r_baggage_type) {
        Py_DECREF(f0);
        return call_pure(args, nargs, NULL);
    }
    PyObject *atoms0 = SLOT(SLOT(f0, o_f_baggage), o_b_atoms);
    Py_ssize_t at = find_atom(atoms0, 0, r_header);
    if (at < 0) {
        Py_DECREF(f0);
        if (at == -2)
            return call_pure(args, nargs, NULL);
        return PyLong_FromLong(0);
    }
    f = own_frame(f0);
    Py_CLEAR(f0);
    if (f == NULL)
        return NULL;
    if (Py_TYPE(f) != r_frame_type || Py_TYPE(SLOT(f, o_f_baggage)) != r_baggage_type)
        goto pure;
    PyObject *b = SLOT(f, o_f_baggage), *ex = SLOT(f, o_f_ex);
    if (PyContextVar_Get(r_eu_var, NULL, &eu) < 0)
        goto done;
    if (eu == NULL || Py_TYPE(eu) != r_eu_type || SLOT(eu, o_eu_ex) != ex) {
        Py_XDECREF(eu);
        if ((eu = PyObject_CallOneArg(r_new_eu, ex)) == NULL)
            goto done;
        if (Py_TYPE(eu) != r_eu_type)
            goto pure;
    }
    PyObject *atoms = SLOT(b, o_b_atoms);
    Py_ssize_t start, end;
    int fast = SLOT(eu, o_eu_last_b) == b;
    if (fast) {
        if ((parents = PyTuple_Pack(1, SLOT(eu, o_eu_last_id))) == NULL)
            goto done;
        task_o = Py_NewRef(SLOT(eu, o_eu_task));
        start = end = 0;
    }
    else {
        unsigned long long task;
        int r;
        if (read_b != Py_None) {
            /* (b, (task, parents, (start, end))): what the caller read of b (on_join) */
            if (!PyTuple_CheckExact(read_b) || PyTuple_GET_SIZE(read_b) != 2)
                goto pure;
        }
        if (read_b != Py_None && PyTuple_GET_ITEM(read_b, 0) == b)
            r = read_given(PyTuple_GET_ITEM(read_b, 1), &task, &parents, &start, &end);
        else
            r = read_simple(atoms, &task, &parents, &start, &end);
        if (r < 0)
            goto done;
        if (r == 0)
            goto pure;
        if ((task_o = PyLong_FromUnsignedLongLong(task)) == NULL)
            goto done;
        PyObject *traces = PyObject_GetAttr(r_rec, s_traces);
        if (traces == NULL)
            goto done;
        int known = PyDict_Contains(traces, task_o);
        Py_DECREF(traces);
        if (known < 0)
            goto done;
        if (!known)
            goto pure; /* the trace's W3C id is learnt by the reference */
        int same = PyObject_RichCompareBool(task_o, SLOT(eu, o_eu_task), Py_EQ);
        if (same < 0)
            goto done;
        if (!same) {
            PyObject *ta = u64_atom(task), *prefix;
            if (ta == NULL)
                goto done;
            prefix = PyTuple_Pack(4, r_header, r_f1, ta, r_f2);
            Py_DECREF(ta);
            if (prefix == NULL)
                goto done;
            slot_set(eu, o_eu_task, Py_NewRef(task_o));
            slot_set(eu, o_eu_prefix, prefix);
        }
    }
    if ((buf = buffer_with_room()) == NULL) {
        if (PyErr_Occurred())
            goto done;
        result = PyLong_FromLong(0);
        goto done;
    }
    if ((eid_o = PyObject_CallOneArg(r_rand, n64)) == NULL)
        goto done;
    int zero = PyObject_Not(eid_o);
    if (zero < 0)
        goto done;
    if (zero)
        Py_SETREF(eid_o, Py_NewRef(n_one));
    unsigned long long eid = PyLong_AsUnsignedLongLong(eid_o);
    if (eid == (unsigned long long)-1 && PyErr_Occurred())
        goto done;
    PyObject *ea = u64_atom(eid);
    if (ea == NULL)
        goto done;
    if (!fast) {
        /* the bag is now the 5 atoms written here: the next event needs no parse */
        PyObject *head = PyTuple_GetSlice(atoms, 0, start), *tail, *h2;
        if (head == NULL) {
            Py_DECREF(ea);
            goto done;
        }
        h2 = PySequence_Concat(head, SLOT(eu, o_eu_prefix));
        Py_DECREF(head);
        tail = h2 ? PyTuple_GetSlice(atoms, end, PyTuple_GET_SIZE(atoms)) : NULL;
        if (tail == NULL) {
            Py_XDECREF(h2);
            Py_DECREF(ea);
            goto done;
        }
        slot_set(eu, o_eu_head, h2);
        slot_set(eu, o_eu_tail, tail);
    }
    PyObject *head = SLOT(eu, o_eu_head), *tail = SLOT(eu, o_eu_tail);
    if (!PyTuple_CheckExact(head) || !PyTuple_CheckExact(tail)) {
        Py_DECREF(ea);
        goto bad_eu;
    }
    Py_ssize_t nh = PyTuple_GET_SIZE(head), nt = PyTuple_GET_SIZE(tail);
    if ((atoms_new = PyTuple_New(nh + 1 + nt)) == NULL) {
        Py_DECREF(ea);
        goto done;
    }
    for (Py_ssize_t i = 0; i < nh; i++)
        PyTuple_SET_ITEM(atoms_new, i, Py_NewRef(PyTuple_GET_ITEM(head, i)));
    PyTuple_SET_ITEM(atoms_new, nh, ea);
    for (Py_ssize_t i = 0; i < nt; i++)
        PyTuple_SET_ITEM(atoms_new, nh + 1 + i, Py_NewRef(PyTuple_GET_ITEM(tail, i)));
    nb = new_baggage(atoms_new);
    atoms_new = NULL;
    if (nb == NULL || keep_parsed(b, nb) < 0)
        goto done;
    slot_set(eu, o_eu_last_b, Py_NewRef(nb));
    slot_set(eu, o_eu_last_id, Py_NewRef(eid_o));
    PyObject *nf = new_frame(nb, ex), *token;
    if (nf == NULL)
        goto done;
    token = PyContextVar_Set(r_frame_var, nf);
    Py_DECREF(nf);
    if (token == NULL)
        goto done;
    Py_DECREF(token);
    PyObject *seq = Py_NewRef(SLOT(eu, o_eu_seq)), *seq1 = PyNumber_Add(seq, n_one);
    if (seq1 == NULL) {
        Py_DECREF(seq);
        goto done;
    }
    slot_set(eu, o_eu_seq, seq1);
    PyObject *span_id;
    if (in_span == Py_None) {
        PyObject *sp;
        if (PyContextVar_Get(r_span_var, Py_None, &sp) < 0) {
            Py_DECREF(seq);
            goto done;
        }
        span_id = sp == Py_None ? PyLong_FromLong(0) : PyObject_GetAttr(sp, s_id);
        Py_DECREF(sp);
        if (span_id == NULL) {
            Py_DECREF(seq);
            goto done;
        }
    }
    else
        span_id = Py_NewRef(in_span);
    PyObject *ts = PyObject_CallNoArgs(r_now);
    if (ts == NULL) {
        Py_DECREF(seq);
        Py_DECREF(span_id);
        goto done;
    }
    item = PyTuple_New(11);
    if (item == NULL) {
        Py_DECREF(seq);
        Py_DECREF(span_id);
        Py_DECREF(ts);
        goto done;
    }
    PyTuple_SET_ITEM(item, 0, Py_NewRef(eu));
    PyTuple_SET_ITEM(item, 1, seq);
    PyTuple_SET_ITEM(item, 2, Py_NewRef(typ));
    PyTuple_SET_ITEM(item, 3, ts);
    PyTuple_SET_ITEM(item, 4, Py_NewRef(task_o));
    PyTuple_SET_ITEM(item, 5, Py_NewRef(eid_o));
    PyTuple_SET_ITEM(item, 6, Py_NewRef(parents));
    PyTuple_SET_ITEM(item, 7, Py_NewRef(label));
    PyTuple_SET_ITEM(item, 8, Py_NewRef(attrs));
    PyTuple_SET_ITEM(item, 9, span_id);
    PyTuple_SET_ITEM(item, 10, Py_NewRef(extra));
    PyObject *r = PyObject_CallMethodOneArg(buf, s_append, item);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    result = Py_NewRef(eid_o);
    goto done;

bad_eu:
    /* (unreachable with the recorder's own EU objects: head/tail are always tuples) */
    PyErr_SetString(PyExc_TypeError, "record: an execution unit of an unexpected shape");
    goto done;
pure:
    result = call_pure(args, nargs, NULL);
done:
    Py_XDECREF(f0);
    Py_XDECREF(f);
    Py_XDECREF(eu);
    Py_XDECREF(buf);
    Py_XDECREF(parents);
    Py_XDECREF(nb);
    Py_XDECREF(eid_o);
    Py_XDECREF(task_o);
    Py_XDECREF(item);
    Py_XDECREF(atoms_new);
    return result;
}

/* recorder.on_join_pure: after a join changed the active baggage, a "join" event when the
 * X-Trace parent set has several members (the bag read once, passed on to record). */
static PyObject *
record_join(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (r_join_pure == NULL)
        return PyErr_Format(PyExc_RuntimeError, "record_join: configure_record was not called");
    PyObject *f, *result = NULL;
    if (PyContextVar_Get(r_frame_var, r_empty_frame, &f) < 0)
        return NULL;
    if (Py_TYPE(f) != r_frame_type || Py_TYPE(SLOT(f, o_f_baggage)) != r_baggage_type) {
        Py_DECREF(f);
        return PyObject_CallNoArgs(r_join_pure);
    }
    PyObject *b = SLOT(f, o_f_baggage), *parents = NULL;
    unsigned long long task;
    Py_ssize_t start, end;
    int r = read_simple(SLOT(b, o_b_atoms), &task, &parents, &start, &end);
    if (r <= 0) {
        Py_DECREF(f);
        if (r < 0)
            return NULL;
        return PyObject_CallNoArgs(r_join_pure); /* none there, or not the simple form */
    }
    if (PyTuple_GET_SIZE(parents) > 1) {
        PyObject *x = Py_BuildValue("(KO(nn))", task, parents, start, end), *read_b, *ev;
        read_b = x ? PyTuple_Pack(2, b, x) : NULL;
        Py_XDECREF(x);
        if (read_b != NULL) {
            PyObject *args[6] = {s_join, s_join, Py_None, Py_None, Py_None, read_b};
            ev = record(NULL, args, 6, NULL);
            Py_DECREF(read_b);
            if (ev != NULL) {
                Py_DECREF(ev);
                result = Py_NewRef(Py_None);
            }
        }
    }
    else
        result = Py_NewRef(Py_None);
    Py_DECREF(parents);
    Py_DECREF(f);
    return result;
}

static PyObject *
configure_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 18)
        return PyErr_Format(PyExc_TypeError, "configure_record takes 18 arguments");
    /* rec, frame_var, empty_frame, eu_var, span_var, Baggage, Frame, EU, header, f1, f2,
     * XTraceBaggage, rand, now, own_frame, new_eu, record_pure, on_join_pure; the transit
     * module is own_frame's */
    PyObject *types[3] = {args[5], args[6], args[7]};
    for (int i = 0; i < 3; i++)
        if (!PyType_Check(types[i]))
            return PyErr_Format(PyExc_TypeError, "configure_record: argument %d is no type",
                                i + 6);
    for (int i = 8; i < 11; i++)
        if (!PyBytes_CheckExact(args[i]))
            return PyErr_Format(PyExc_TypeError, "configure_record: argument %d is no bytes",
                                i + 1);
    PyTypeObject *bt = (PyTypeObject *)args[5], *ft = (PyTypeObject *)args[6],
                 *et = (PyTypeObject *)args[7];
    if (slot_offset(bt, "_atoms", &o_b_atoms) < 0 || slot_offset(bt, "_bytes", &o_b_bytes) < 0 ||
        slot_offset(bt, "_bags", &o_b_bags) < 0 ||
        slot_offset(bt, "_segments", &o_b_segments) < 0 ||
        slot_offset(bt, "_heads", &o_b_heads) < 0 || slot_offset(bt, "_marker", &o_b_marker) < 0 ||
        slot_offset(ft, "baggage", &o_f_baggage) < 0 || slot_offset(ft, "ex", &o_f_ex) < 0 ||
        slot_offset(et, "ex", &o_eu_ex) < 0 || slot_offset(et, "last_b", &o_eu_last_b) < 0 ||
        slot_offset(et, "last_id", &o_eu_last_id) < 0 ||
        slot_offset(et, "head", &o_eu_head) < 0 || slot_offset(et, "tail", &o_eu_tail) < 0 ||
        slot_offset(et, "seq", &o_eu_seq) < 0 || slot_offset(et, "task", &o_eu_task) < 0 ||
        slot_offset(et, "prefix", &o_eu_prefix) < 0)
        return NULL;
    PyObject *own = args[14];
    PyObject *mod_name = PyObject_GetAttrString(own, "__module__"), *transit;
    if (mod_name == NULL)
        return NULL;
    transit = PyImport_GetModule(mod_name);
    Py_DECREF(mod_name);
    if (transit == NULL)
        return PyErr_Occurred() ? NULL
                                : PyErr_Format(PyExc_RuntimeError, "own_frame's module is gone");
    Py_XSETREF(r_transit, transit);
    PyObject **refs[] = {&r_rec, &r_frame_var, &r_empty_frame, &r_eu_var, &r_span_var,
                         (PyObject **)&r_baggage_type, (PyObject **)&r_frame_type,
                         (PyObject **)&r_eu_type, &r_header, &r_f1, &r_f2, &r_xtrace, &r_rand,
                         &r_now, &r_own_frame, &r_new_eu, &r_pure, &r_join_pure};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) /* (in the arguments' order) */
        Py_XSETREF(*refs[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

static PyMethodDef record_methods[] = {
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL | METH_KEYWORDS,
     "record(typ, label, attrs=None, extra=None, in_span=None, _read_b=None): "
     "recorder.record_pure in C."},
    {"record_join", record_join, METH_NOARGS,
     "record_join(): recorder.on_join_pure in C (transit's join hook)."},
    {"configure_record", (PyCFunction)(void (*)(void))configure_record, METH_FASTCALL,
     "configure_record(...): what record works with (recorder.py calls it at import)."},
    {NULL, NULL, 0, NULL},
};

int
cp_record_init(PyObject *module)
{
#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return -1
    INTERN(s_buf, "buf");
    INTERN(s_capacity, "capacity");
    INTERN(s_dropped, "dropped");
    INTERN(s_traces, "traces");
    INTERN(s_append, "append");
    INTERN(s_id, "id");
    INTERN(s_creator, "creator");
    INTERN(s_running_loop, "_running_loop");
    INTERN(s_task_of, "_task_of");
    INTERN(s_lazy_type, "_lazy_type");
    INTERN(s_join, "join");
#undef INTERN
    if ((n64 = PyLong_FromLong(64)) == NULL || (n_one = PyLong_FromLong(1)) == NULL ||
        (n_minus2 = PyLong_FromLong(-2)) == NULL)
        return -1;
    return PyModule_AddFunctions(module, record_methods);
}
