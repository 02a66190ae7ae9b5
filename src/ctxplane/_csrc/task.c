/* The asyncio task type in C: a subclass of _asyncio.Task that is its own execution record
 * (ctxplane/transit/context.py, ExecutionRecord) and joins at the moment of observation.
 * Twin of ctxplane/patches/asyncio_.py:JoiningTask (the reference), wired by
 * ctxplane/patches/_ctask.py.
 *
 * Only the common case runs here - a child whose frame is still the one it started with,
 * observed first, by a known observer: a few field writes. Every other join goes through the
 * Python functions (transit.context.join_execution / join_executions, via the glue's hooks),
 * so the compaction rule has one implementation. */
#include "speedups.h"
#include <structmember.h>
#include <pythread.h>

typedef struct {
    PyObject *ctx;         /* the child's context (branched at creation) */
    PyObject *start;       /* the frame it started with */
    PyObject *creator;     /* the record that branched it */
    PyObject *own;         /* its own counter component, or NULL (None) */
    PyObject *folded_into; /* (record, value) once folded, or NULL (None) */
    PyObject *loop;        /* the task's loop (NULL: read from the task) */
    Py_ssize_t pending;    /* children branched and not yet observed by it */
    char escaped, claimed;
} fields_t;

static PyTypeObject *task_base, *ctask_type, *await_type, *creator_type;
static Py_ssize_t fields_offset;
#define F(o) ((fields_t *)((char *)(o) + fields_offset))
#define IS_CTASK(o) (Py_TYPE(o) == ctask_type)

/* the Python pieces (set by configure_tasks) */
static PyObject *frame_var, *current_tasks, *get_running_loop, *own_frame_fn, *join_slow_fn,
    *join_many_fn, *join_child_fn, *escape_fn;
static PyTypeObject *base_loop_type;
static PyObject *s_ex, *s_thread_id, *s_closed, *s_task_factory, *s_pending, *s_loop, *kw_task;
static PyObject *s_group_tasks;
static PyCFunction base_result, base_exception, base_done;

/* -- records ------------------------------------------------------------------------------- */

static int
pending_add(PyObject *rec, Py_ssize_t d)
{
    PyObject *v, *n, *dd;
    int r;
    if (IS_CTASK(rec)) {
        F(rec)->pending += d;
        return 0;
    }
    if ((v = PyObject_GetAttr(rec, s_pending)) == NULL)
        return -1;
    dd = PyLong_FromSsize_t(d);
    n = dd ? PyNumber_Add(v, dd) : NULL;
    Py_DECREF(v);
    Py_XDECREF(dd);
    if (n == NULL)
        return -1;
    r = PyObject_SetAttr(rec, s_pending, n);
    Py_DECREF(n);
    return r;
}

/* transit.context._escape: this record and its creators may be seen by others: never fold. */
static int
escape(PyObject *ex)
{
    while (ex != NULL && ex != Py_None) {
        PyObject *r;
        if (!IS_CTASK(ex)) {
            if ((r = PyObject_CallOneArg(escape_fn, ex)) == NULL)
                return -1;
            Py_DECREF(r);
            return 0;
        }
        if (F(ex)->escaped)
            return 0;
        F(ex)->escaped = 1;
        ex = F(ex)->creator;
    }
    return 0;
}

static PyObject *
loop_of(PyObject *task)
{
    PyObject *loop = F(task)->loop;
    if (loop != NULL) {
        Py_INCREF(loop);
        return loop;
    }
    return PyObject_GetAttr(task, s_loop);
}

/* f.ex (a new reference): read from the slot when f is a Frame (its __slots__ member). */
static PyTypeObject *frame_type;
static Py_ssize_t frame_ex_offset = -1;

static PyObject *
frame_ex(PyObject *f)
{
    if (Py_TYPE(f) == frame_type) {
        PyObject *ex = *(PyObject **)((char *)f + frame_ex_offset);
        if (ex != NULL)
            return Py_NewRef(ex);
    }
    else if (frame_type == NULL) {
        /* first call: find the slot of Frame.ex */
        PyObject *d = PyObject_GetAttr((PyObject *)Py_TYPE(f), s_ex);
        if (d == NULL)
            return NULL;
        if (Py_IS_TYPE(d, &PyMemberDescr_Type) &&
            ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX) {
            frame_ex_offset = ((PyMemberDescrObject *)d)->d_member->offset;
            frame_type = (PyTypeObject *)Py_NewRef(Py_TYPE(f));
        }
        Py_DECREF(d);
    }
    return PyObject_GetAttr(f, s_ex);
}

/* The running task of `loop` (a new reference in *task, or NULL): where a task that awaits
 * or creates a child of `loop` runs. (The observer found from it is the one
 * transit.context._exec_of finds whenever the loop runs in this thread - asyncio's tasks are
 * not thread-safe - so no _get_running_loop, no getpid.) Returns 0, or -1 on error. */
static int
task_of(PyObject *loop, PyObject **task)
{
    PyObject *t = PyDict_GetItemWithError(current_tasks, loop);
    if (t == NULL && PyErr_Occurred())
        return -1;
    *task = Py_XNewRef(t);
    return 0;
}

/* The running task of the loop running in this thread (a new reference in *task, or NULL).
 * Without _get_running_loop's getpid when `loop` is one of asyncio's own and runs in this
 * thread. Returns 1 if a loop runs in this thread, 0 if none, -1 on error. */
/* The loop whose run_forever runs in this thread, as the patched run_forever says (a strong
 * reference, or NULL; see set_running_loop). */
static __thread PyObject *loop_here;

static int
runs_here(PyObject *loop)
{
    PyObject *tid;
    int here;
    if (loop != NULL && loop == loop_here)
        return 1;
    if (loop == NULL || !PyObject_TypeCheck(loop, base_loop_type))
        return 0;
    if ((tid = PyObject_GetAttr(loop, s_thread_id)) == NULL)
        return -1;
    here = PyLong_CheckExact(tid) && PyLong_AsUnsignedLong(tid) == PyThread_get_thread_ident();
    Py_DECREF(tid);
    return PyErr_Occurred() ? -1 : here;
}

static int
running_task(PyObject *loop, PyObject **task)
{
    PyObject *rl, *t;
    int here = runs_here(loop);
    *task = NULL;
    if (here < 0)
        return -1;
    if (here) {
        t = PyDict_GetItemWithError(current_tasks, loop);
        if (t == NULL && PyErr_Occurred())
            return -1;
        Py_XINCREF(t);
        *task = t;
        return 1;
    }
    if ((rl = PyObject_CallNoArgs(get_running_loop)) == NULL)
        return -1;
    if (rl == Py_None) {
        Py_DECREF(rl);
        return 0;
    }
    t = PyDict_GetItemWithError(current_tasks, rl);
    Py_DECREF(rl);
    if (t == NULL && PyErr_Occurred())
        return -1;
    Py_XINCREF(t);
    *task = t;
    return 1;
}

/* The observer: the current frame's execution, or the running task when that is a lazy child
 * whose frame is (a descendant of) its creator's (transit.context._exec_of). New reference,
 * or NULL with no error when there is no frame. */
static PyObject *
observer_of(PyObject *t)
{
    PyObject *f, *ex;
    if (PyContextVar_Get(frame_var, NULL, &f) < 0 || f == NULL)
        return NULL;
    ex = frame_ex(f);
    Py_DECREF(f);
    if (ex == NULL)
        return NULL;
    if (t != NULL && IS_CTASK(t) && (ex == t || ex == F(t)->creator)) {
        Py_DECREF(ex);
        Py_INCREF(t);
        return t;
    }
    return ex;
}

static int
call_hook(PyObject *hook, PyObject *arg)
{
    PyObject *r = PyObject_CallOneArg(hook, arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The child's end frame (new reference; None when it has none). */
static PyObject *
end_frame(PyObject *self)
{
    PyObject *end;
    if (F(self)->ctx == NULL)
        Py_RETURN_NONE;
    end = PyObject_GetItem(F(self)->ctx, frame_var);
    if (end == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return end;
}

/* transit.context.join_execution(self, end, start, locked=False): the identity case here,
 * the rest in Python. `t` is the running task when known (have_t), else looked up. */
static int
join_task(PyObject *self, int have_t, PyObject *t)
{
    fields_t *fs = F(self);
    PyObject *end, *observer, *loop;
    int r, own_t = 0;
    if (fs->claimed || fs->start == NULL)
        goto slow;
    if ((end = end_frame(self)) == NULL)
        return -1;
    Py_DECREF(end);
    if (end != fs->start)
        goto slow;
    if (!have_t) {
        if ((loop = loop_of(self)) == NULL)
            return -1;
        r = task_of(loop, &t);
        Py_DECREF(loop);
        if (r < 0)
            return -1;
        own_t = 1;
    }
    observer = observer_of(t);
    if (own_t)
        Py_XDECREF(t);
    if (observer == NULL) {
        if (PyErr_Occurred())
            return -1;
        goto slow;
    }
    if (observer == Py_None) {
        Py_DECREF(observer);
        goto slow;
    }
    fs->claimed = 1;
    r = fs->creator == observer ? pending_add(observer, -1) : escape(self);
    Py_DECREF(observer);
    return r;
slow:
    return call_hook(join_slow_fn, self);
}

/* -- the task type ------------------------------------------------------------------------- */

static int
ctask_traverse(PyObject *self, visitproc visit, void *arg)
{
    fields_t *fs = F(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(fs->ctx);
    Py_VISIT(fs->start);
    Py_VISIT(fs->creator);
    Py_VISIT(fs->own);
    Py_VISIT(fs->folded_into);
    Py_VISIT(fs->loop);
    return task_base->tp_traverse(self, visit, arg);
}

static void
clear_fields(PyObject *self)
{
    fields_t *fs = F(self);
    Py_CLEAR(fs->ctx);
    Py_CLEAR(fs->start);
    Py_CLEAR(fs->creator);
    Py_CLEAR(fs->own);
    Py_CLEAR(fs->folded_into);
    Py_CLEAR(fs->loop);
}

static int
ctask_clear(PyObject *self)
{
    clear_fields(self);
    return task_base->tp_clear(self);
}

static void
ctask_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    /* the base's finalizer (a pending task logs) may resurrect: then keep everything */
    if (PyObject_CallFinalizerFromDealloc(self) < 0)
        return;
    PyObject_GC_UnTrack(self);
    clear_fields(self);
    task_base->tp_dealloc(self); /* a static type's dealloc: it does not release the type */
    Py_DECREF(tp);
}

/* after result() / exception(): join when done and the running code observes (not a
 * callback run by the loop). */
static int
after_read(PyObject *self)
{
    PyObject *done = base_done(self, NULL), *loop, *t;
    int r;
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    if (done != Py_True)
        return 0;
    if ((loop = loop_of(self)) == NULL)
        return -1;
    r = running_task(loop, &t);
    Py_DECREF(loop);
    if (r < 0)
        return -1;
    if (r == 1 && t == NULL) /* a callback of the running loop */
        return 0;
    r = join_task(self, 1, t);
    Py_XDECREF(t);
    return r;
}

static PyObject *
read_then_join(PyObject *self, PyCFunction read)
{
    PyObject *res = read(self, NULL), *et, *ev, *etb;
    /* the common case first, at the cost of two loads and a comparison: a callback of the
     * loop running in this thread (gather's and TaskGroup's done callbacks read every child)
     * while no task of any loop runs - running_task() would find none: nothing to join */
    if (PyDict_GET_SIZE(current_tasks) == 0 && F(self)->loop != NULL &&
        F(self)->loop == loop_here)
        return res;
    PyErr_Fetch(&et, &ev, &etb);
    if (after_read(self) < 0) {
        Py_XDECREF(res);
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(etb);
        return NULL;
    }
    PyErr_Restore(et, ev, etb);
    return res;
}

static PyObject *
ctask_result(PyObject *self, PyObject *unused)
{
    return read_then_join(self, base_result);
}

static PyObject *
ctask_exception(PyObject *self, PyObject *unused)
{
    return read_then_join(self, base_exception);
}

static PyObject *
ctask_join(PyObject *self, PyObject *unused)
{
    if (join_task(self, 0, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* -- the await iterator: the base's, joining when it finishes ------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *task;
    PyObject *inner;
} AwaitObj;

static PyObject *
ctask_await(PyObject *self)
{
    AwaitObj *it;
    PyObject *inner = task_base->tp_as_async->am_await(self);
    if (inner == NULL)
        return NULL;
    it = PyObject_GC_New(AwaitObj, await_type);
    if (it == NULL) {
        Py_DECREF(inner);
        return NULL;
    }
    Py_INCREF(self);
    it->task = self;
    it->inner = inner;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

/* The awaited task finished (or the await failed): join if done, keeping what is raised. */
static int
await_finished(AwaitObj *it, int returned)
{
    PyObject *et, *ev, *etb, *done;
    int r = 0;
    if (it->task == NULL)
        return 0;
    if (returned) { /* the base's iterator returns the result of a done task only */
        r = join_task(it->task, 0, NULL);
        Py_CLEAR(it->task);
        return r;
    }
    PyErr_Fetch(&et, &ev, &etb);
    done = base_done(it->task, NULL);
    if (done == NULL)
        r = -1;
    else {
        if (done == Py_True)
            r = join_task(it->task, 0, NULL);
        Py_DECREF(done);
    }
    Py_CLEAR(it->task); /* one join per await */
    if (r < 0) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(etb);
        return -1;
    }
    PyErr_Restore(et, ev, etb);
    return 0;
}

static PySendResult
await_send(PyObject *self, PyObject *arg, PyObject **result)
{
    AwaitObj *it = (AwaitObj *)self;
    PyTypeObject *tp = Py_TYPE(it->inner);
    PySendResult r;
    if (tp->tp_as_async != NULL && tp->tp_as_async->am_send != NULL)
        r = tp->tp_as_async->am_send(it->inner, arg, result);
    else
        r = PyIter_Send(it->inner, arg, result);
    if (r == PYGEN_NEXT)
        return r;
    if (await_finished(it, r == PYGEN_RETURN) < 0) {
        if (r == PYGEN_RETURN)
            Py_CLEAR(*result);
        *result = NULL;
        return PYGEN_ERROR;
    }
    return r;
}

static PyObject *
await_iternext(PyObject *self)
{
    PyObject *result;
    switch (await_send(self, Py_None, &result)) {
    case PYGEN_NEXT:
        return result;
    case PYGEN_RETURN:
        if (result != Py_None)
            _PyGen_SetStopIterationValue(result);
        Py_DECREF(result);
        return NULL;
    default:
        return NULL;
    }
}

static PyObject *
await_send_method(PyObject *self, PyObject *arg)
{
    PyObject *result;
    switch (await_send(self, arg, &result)) {
    case PYGEN_NEXT:
        return result;
    case PYGEN_RETURN:
        _PyGen_SetStopIterationValue(result);
        Py_DECREF(result);
        return NULL;
    default:
        return NULL;
    }
}

static PyObject *
await_forward(PyObject *self, const char *name, PyObject *const *args, Py_ssize_t nargs)
{
    AwaitObj *it = (AwaitObj *)self;
    PyObject *meth = PyObject_GetAttrString(it->inner, name), *r;
    if (meth == NULL)
        return NULL;
    r = PyObject_Vectorcall(meth, args, (size_t)nargs, NULL);
    Py_DECREF(meth);
    if (await_finished(it, 0) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *
await_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return await_forward(self, "throw", args, nargs);
}

static PyObject *
await_close(PyObject *self, PyObject *unused)
{
    return await_forward(self, "close", NULL, 0);
}

static int
await_traverse(PyObject *self, visitproc visit, void *arg)
{
    AwaitObj *it = (AwaitObj *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(it->task);
    Py_VISIT(it->inner);
    return 0;
}

static int
await_clear(PyObject *self)
{
    AwaitObj *it = (AwaitObj *)self;
    Py_CLEAR(it->task);
    Py_CLEAR(it->inner);
    return 0;
}

static void
await_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    await_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef await_methods[] = {
    {"send", await_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))await_throw, METH_FASTCALL, NULL},
    {"close", await_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot await_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, await_iternext},
    {Py_tp_methods, await_methods},
    {Py_tp_traverse, await_traverse},
    {Py_tp_clear, await_clear},
    {Py_tp_dealloc, await_dealloc},
    {Py_am_send, await_send},
    {0, NULL},
};

static PyType_Spec await_spec = {
    "ctxplane._speedups.TaskAwait", sizeof(AwaitObj), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, await_slots,
};

/* -- the batch join (gather, TaskGroup exit) ----------------------------------------------- */

/* asyncio_._join_all: children observed together, in order; this type's children that changed
 * nothing are joined here, the first other one and everything after it go to
 * transit.context.join_executions in one batch (the same rule, in the same order); children of
 * other kinds go to asyncio_._join_child as they come. */
static PyObject *
join_tasks(PyObject *module, PyObject *children)
{
    PyObject *seq = PySequence_Fast(children, "children must be iterable"), *items = NULL;
    PyObject *observer = NULL, *t = NULL, *result = NULL;
    Py_ssize_t n;
    int have_observer = 0;
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *child = PySequence_Fast_GET_ITEM(seq, i), *end, *item;
        fields_t *fs;
        if (!IS_CTASK(child)) {
            if (call_hook(join_child_fn, child) < 0)
                goto done;
            continue;
        }
        fs = F(child);
        if ((end = end_frame(child)) == NULL)
            goto done;
        if (items == NULL && end == fs->start && !fs->claimed) {
            if (!have_observer) {
                PyObject *loop = loop_of(child);
                int r;
                if (loop == NULL)
                    goto fail_end;
                r = task_of(loop, &t);
                Py_DECREF(loop);
                if (r < 0)
                    goto fail_end;
                observer = observer_of(t);
                if (observer == NULL && PyErr_Occurred())
                    goto fail_end;
                have_observer = 1;
            }
            if (observer != NULL && observer != Py_None) {
                int r;
                fs->claimed = 1;
                r = fs->creator == observer ? pending_add(observer, -1) : escape(child);
                Py_DECREF(end);
                if (r < 0)
                    goto done;
                continue;
            }
        }
        if (items == NULL && (items = PyList_New(0)) == NULL)
            goto fail_end;
        item = PyTuple_Pack(3, child, end, fs->start ? fs->start : Py_None);
        if (item == NULL || PyList_Append(items, item) < 0) {
            Py_XDECREF(item);
            goto fail_end;
        }
        Py_DECREF(item);
        Py_DECREF(end);
        continue;
    fail_end:
        Py_DECREF(end);
        goto done;
    }
    if (items != NULL && call_hook(join_many_fn, items) < 0)
        goto done;
    result = Py_NewRef(Py_None);
done:
    Py_DECREF(seq);
    Py_XDECREF(items);
    Py_XDECREF(observer);
    Py_XDECREF(t);
    return result;
}

/* -- create_task: the branch, as a method descriptor of the loop class --------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *fallback; /* the Python create_task (factories, a given context, uvloop...) */
    vectorcallfunc vectorcall;
    PyObject *original; /* a group's: TaskGroup.create_task as asyncio defines it */
} CreatorObj;

static PyObject *
creator_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CreatorObj *c = (CreatorObj *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *loop, *coro, *name = Py_None, *v, *f = NULL, *ex = NULL, *t = NULL, *ctx = NULL;
    PyObject *task, *targs[5];
    if (nargs != 2)
        goto fallback;
    loop = args[0];
    coro = args[1];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i), *val = args[nargs + i];
            if (PyUnicode_CompareWithASCIIString(k, "name") == 0)
                name = val;
            else if (PyUnicode_CompareWithASCIIString(k, "context") != 0 || val != Py_None)
                goto fallback;
        }
    }
    if (!PyObject_TypeCheck(loop, base_loop_type))
        goto fallback;
    /* loop._task_factory is None and the loop is open (else the Python path) */
    if ((v = PyObject_GetAttr(loop, s_task_factory)) == NULL)
        goto error;
    Py_DECREF(v);
    if (v != Py_None)
        goto fallback;
    if ((v = PyObject_GetAttr(loop, s_closed)) == NULL)
        goto error;
    Py_DECREF(v);
    if (v != Py_False)
        goto fallback;
    /* own_frame(), with its common case here: the running task of this loop already has a
     * frame naming it */
    if (task_of(loop, &t) < 0)
        goto error;
    if (t != NULL && PyContextVar_Get(frame_var, NULL, &f) == 0 && f != NULL) {
        if ((ex = frame_ex(f)) == NULL)
            goto error;
        if (ex != t) {
            Py_CLEAR(f);
            Py_CLEAR(ex);
        }
    }
    if (PyErr_Occurred())
        goto error;
    if (f == NULL) {
        if ((f = PyObject_CallNoArgs(own_frame_fn)) == NULL)
            goto error;
        if ((ex = frame_ex(f)) == NULL)
            goto error;
    }
    if (ex == Py_None || (ctx = PyContext_CopyCurrent()) == NULL)
        goto error;
    targs[0] = NULL;
    targs[1] = coro;
    targs[2] = loop;
    targs[3] = name;
    targs[4] = ctx;
    task = PyObject_Vectorcall((PyObject *)ctask_type, targs + 1,
                               1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw_task);
    if (task != NULL) {
        fields_t *fs = F(task);
        Py_XSETREF(fs->ctx, ctx);
        Py_XSETREF(fs->start, f);
        Py_XSETREF(fs->creator, ex);
        Py_XSETREF(fs->loop, Py_NewRef(loop));
        fs->claimed = 0;
        if (pending_add(fs->creator, 1) < 0)
            Py_CLEAR(task);
    }
    else {
        Py_DECREF(ctx);
        Py_DECREF(f);
        Py_DECREF(ex);
    }
    Py_XDECREF(t);
    return task;
error:
    /* the Python path reports ctxplane's own failure and still makes a task */
    PyErr_Clear();
    Py_XDECREF(f);
    Py_XDECREF(ex);
    Py_XDECREF(ctx);
fallback:
    Py_XDECREF(t);
    return PyObject_Vectorcall(c->fallback, args, nargsf, kwnames);
}

/* TaskGroup.create_task: asyncio's own, then the task appended to the group's
 * _ctxplane_tasks (its exit joins them); what the Python wrapper does, without its frame.
 * Keywords other than name= go to the Python wrapper (it knows which this Python takes). */
static PyObject *
group_creator_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CreatorObj *c = (CreatorObj *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *task, *tasks;
    if (nargs != 2)
        return PyObject_Vectorcall(c->fallback, args, nargsf, kwnames);
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++)
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "name") != 0)
                return PyObject_Vectorcall(c->fallback, args, nargsf, kwnames);
    }
    task = PyObject_Vectorcall(c->original, args, nargsf, kwnames);
    if (task == NULL)
        return NULL;
    tasks = PyObject_GetAttr(args[0], s_group_tasks);
    if (tasks != NULL && PyList_CheckExact(tasks)) {
        if (PyList_Append(tasks, task) < 0)
            PyErr_Clear();
    }
    else if (tasks == Py_None) {
        PyObject *list = PyList_New(1);
        if (list != NULL) {
            PyList_SET_ITEM(list, 0, Py_NewRef(task));
            if (PyObject_SetAttr(args[0], s_group_tasks, list) < 0)
                PyErr_Clear();
            Py_DECREF(list);
        }
        else
            PyErr_Clear();
    }
    else
        PyErr_Clear(); /* not ours to judge: the group simply is not joined at its exit */
    Py_XDECREF(tasks);
    return task;
}

static PyObject *
creator_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *
creator_wrapped(PyObject *self, void *unused)
{
    return PyObject_GetAttrString(((CreatorObj *)self)->fallback, "__wrapped__");
}

static int
creator_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((CreatorObj *)self)->fallback);
    Py_VISIT(((CreatorObj *)self)->original);
    return 0;
}

static int
creator_clear(PyObject *self)
{
    Py_CLEAR(((CreatorObj *)self)->fallback);
    Py_CLEAR(((CreatorObj *)self)->original);
    return 0;
}

static void
creator_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    creator_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyGetSetDef creator_getset[] = {
    {"__wrapped__", creator_wrapped, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef creator_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CreatorObj, vectorcall), READONLY, NULL},
    {"fallback", T_OBJECT, offsetof(CreatorObj, fallback), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot creator_slots[] = {
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, creator_get},
    {Py_tp_getset, creator_getset},
    {Py_tp_members, creator_members},
    {Py_tp_traverse, creator_traverse},
    {Py_tp_clear, creator_clear},
    {Py_tp_dealloc, creator_dealloc},
    {Py_tp_doc, "create_task(loop, coro, *, name=None, context=None) of an asyncio loop class: "
                "the branch in C, the Python create_task for everything else."},
    {0, NULL},
};

static PyType_Spec creator_spec = {
    "ctxplane._speedups.CreateTask", sizeof(CreatorObj), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
        Py_TPFLAGS_METHOD_DESCRIPTOR,
    creator_slots,
};

static PyObject *
make_create_task(PyObject *module, PyObject *fallback)
{
    CreatorObj *c;
    if (creator_type == NULL)
        return PyErr_Format(PyExc_RuntimeError, "configure_tasks() first");
    c = PyObject_GC_New(CreatorObj, creator_type);
    if (c == NULL)
        return NULL;
    c->fallback = Py_NewRef(fallback);
    c->vectorcall = creator_call;
    c->original = NULL;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

static PyObject *
make_group_create_task(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    CreatorObj *c;
    if (nargs != 2)
        return PyErr_Format(PyExc_TypeError, "make_group_create_task(fallback, original)");
    if (creator_type == NULL)
        return PyErr_Format(PyExc_RuntimeError, "configure_tasks() first");
    c = PyObject_GC_New(CreatorObj, creator_type);
    if (c == NULL)
        return NULL;
    c->fallback = Py_NewRef(args[0]);
    c->original = Py_NewRef(args[1]);
    c->vectorcall = group_creator_call;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

/* -- set-up -------------------------------------------------------------------------------- */

static PyMethodDef ctask_methods[] = {
    {"result", ctask_result, METH_NOARGS, "Task.result(), then the join (when observed)."},
    {"exception", ctask_exception, METH_NOARGS,
     "Task.exception(), then the join (when observed)."},
    {"_join", ctask_join, METH_NOARGS, "Join this finished task into the running code."},
    {NULL, NULL, 0, NULL},
};

#define FIELD(name, type, field) {name, type, offsetof(fields_t, field), 0, NULL}
static PyMemberDef ctask_members[] = {
    FIELD("_cp_ctx", T_OBJECT_EX, ctx),
    FIELD("_cp_start", T_OBJECT_EX, start),
    FIELD("_cp_loop", T_OBJECT_EX, loop),
    FIELD("creator", T_OBJECT, creator),
    FIELD("own", T_OBJECT, own),
    FIELD("folded_into", T_OBJECT, folded_into),
    FIELD("pending", T_PYSSIZET, pending),
    FIELD("escaped", T_BOOL, escaped),
    FIELD("claimed", T_BOOL, claimed),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot ctask_slots[] = {
    {Py_tp_doc, "An asyncio.Task that is its own execution record and joins its final baggage "
                "into whoever observes it (the compiled twin of asyncio_.JoiningTask)."},
    {Py_tp_methods, ctask_methods},
    {Py_tp_members, ctask_members},
    {Py_tp_traverse, ctask_traverse},
    {Py_tp_clear, ctask_clear},
    {Py_tp_dealloc, ctask_dealloc},
    {Py_am_await, ctask_await},
    {Py_tp_iter, ctask_await},
    {0, NULL},
};

static PyCFunction
noargs_method(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    PyCFunction fn = NULL;
    if (d == NULL)
        return NULL;
    if (Py_IS_TYPE(d, &PyMethodDescr_Type) &&
        ((PyMethodDescrObject *)d)->d_method->ml_flags == METH_NOARGS)
        fn = ((PyMethodDescrObject *)d)->d_method->ml_meth;
    else
        PyErr_Format(PyExc_TypeError, "_asyncio.Task.%s is not a plain C method", name);
    Py_DECREF(d);
    return fn;
}

/* configure_tasks(frame_var, current_tasks, get_running_loop, base_loop_type, own_frame,
 *                 join_slow, join_many, join_child, escape) -> the task type */
static PyObject *
configure_tasks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *mod, *bases;
    static PyType_Spec spec = {"ctxplane._speedups.JoiningTask", 0, 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, ctask_slots};
    if (nargs != 9)
        return PyErr_Format(PyExc_TypeError, "configure_tasks takes 9 arguments");
    if (!PyDict_CheckExact(args[1]) || !PyType_Check(args[3]))
        return PyErr_Format(PyExc_TypeError, "current_tasks must be a dict, base_loop a type");
    Py_XSETREF(frame_var, Py_NewRef(args[0]));
    Py_XSETREF(current_tasks, Py_NewRef(args[1]));
    Py_XSETREF(get_running_loop, Py_NewRef(args[2]));
    Py_XSETREF(base_loop_type, (PyTypeObject *)Py_NewRef(args[3]));
    Py_XSETREF(own_frame_fn, Py_NewRef(args[4]));
    Py_XSETREF(join_slow_fn, Py_NewRef(args[5]));
    Py_XSETREF(join_many_fn, Py_NewRef(args[6]));
    Py_XSETREF(join_child_fn, Py_NewRef(args[7]));
    Py_XSETREF(escape_fn, Py_NewRef(args[8]));
    if (ctask_type != NULL)
        return Py_NewRef((PyObject *)ctask_type);
    if ((s_ex = PyUnicode_InternFromString("ex")) == NULL ||
        (s_thread_id = PyUnicode_InternFromString("_thread_id")) == NULL ||
        (s_closed = PyUnicode_InternFromString("_closed")) == NULL ||
        (s_task_factory = PyUnicode_InternFromString("_task_factory")) == NULL ||
        (s_pending = PyUnicode_InternFromString("pending")) == NULL ||
        (s_loop = PyUnicode_InternFromString("_loop")) == NULL ||
        (s_group_tasks = PyUnicode_InternFromString("_ctxplane_tasks")) == NULL)
        return NULL;
    if ((kw_task = Py_BuildValue("(sss)", "loop", "name", "context")) == NULL)
        return NULL;
    if ((mod = PyImport_ImportModule("_asyncio")) == NULL)
        return NULL;
    task_base = (PyTypeObject *)PyObject_GetAttrString(mod, "Task");
    Py_DECREF(mod);
    if (task_base == NULL)
        return NULL;
    if (!PyType_Check(task_base) || task_base->tp_as_async == NULL ||
        task_base->tp_as_async->am_await == NULL || task_base->tp_traverse == NULL ||
        task_base->tp_clear == NULL || task_base->tp_dealloc == NULL)
        return PyErr_Format(PyExc_TypeError, "_asyncio.Task is not the type this was built for");
    if ((base_result = noargs_method(task_base, "result")) == NULL ||
        (base_exception = noargs_method(task_base, "exception")) == NULL ||
        (base_done = noargs_method(task_base, "done")) == NULL)
        return NULL;
    fields_offset = (task_base->tp_basicsize + (Py_ssize_t)sizeof(void *) - 1) &
                    ~((Py_ssize_t)sizeof(void *) - 1);
    spec.basicsize = (int)(fields_offset + (Py_ssize_t)sizeof(fields_t));
    for (PyMemberDef *m = ctask_members; m->name != NULL; m++)
        m->offset += fields_offset;
    if ((bases = PyTuple_Pack(1, task_base)) == NULL)
        return NULL;
    ctask_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &spec, bases);
    Py_DECREF(bases);
    if (ctask_type == NULL)
        return NULL;
    if ((await_type = (PyTypeObject *)PyType_FromSpec(&await_spec)) == NULL ||
        (creator_type = (PyTypeObject *)PyType_FromSpec(&creator_spec)) == NULL)
        return NULL;
    return Py_NewRef((PyObject *)ctask_type);
}

/* set_running_loop(loop or None) -> the previous one: called by the patched
 * BaseEventLoop.run_forever on entry and exit, so that telling a callback of the running loop
 * from a task costs a pointer comparison. */
static PyObject *
set_running_loop(PyObject *module, PyObject *loop)
{
    PyObject *previous = loop_here ? loop_here : Py_NewRef(Py_None);
    loop_here = loop == Py_None ? NULL : Py_NewRef(loop);
    return previous;
}

/* running_loop(): the loop running in this thread - the one the patched run_forever named,
 * with no system call (asyncio's _get_running_loop makes a getpid on 3.11, ~1 us here), else
 * what asyncio's says (a loop started before the patch, or by a loop class that is not
 * asyncio's). A forked child forgets it (reset_after_fork). */
static PyObject *
running_loop(PyObject *module, PyObject *unused)
{
    if (loop_here != NULL)
        return Py_NewRef(loop_here);
    if (get_running_loop == NULL)
        Py_RETURN_NONE;
    return PyObject_CallNoArgs(get_running_loop);
}

/* after fork, in the child: the parent's running loop does not run here */
static PyObject *
reset_after_fork(PyObject *module, PyObject *unused)
{
    Py_CLEAR(loop_here);
    Py_RETURN_NONE;
}

PyMethodDef cp_task_methods[] = {
    {"running_loop", running_loop, METH_NOARGS,
     "running_loop(): the event loop running in this thread, or None."},
    {"reset_after_fork", reset_after_fork, METH_NOARGS,
     "Forget the running loop (in a forked child)."},
    {"set_running_loop", set_running_loop, METH_O,
     "set_running_loop(loop): the loop now running in this thread (None: none); returns the "
     "previous one."},
    {"configure_tasks", (PyCFunction)(void (*)(void))configure_tasks, METH_FASTCALL,
     "Hand the task type its Python pieces; returns the type (made on the first call)."},
    {"make_create_task", make_create_task, METH_O,
     "make_create_task(fallback): a create_task method for asyncio's loop classes."},
    {"make_group_create_task", (PyCFunction)(void (*)(void))make_group_create_task,
     METH_FASTCALL,
     "make_group_create_task(fallback, original): TaskGroup.create_task remembering the "
     "group's tasks; fallback (the Python wrapper) for keywords other than name=."},
    {"join_tasks", join_tasks, METH_O,
     "join_tasks(children): the batch join of children observed together."},
    {NULL, NULL, 0, NULL},
};

int
cp_task_init(PyObject *module)
{
    return PyModule_AddFunctions(module, cp_task_methods);
}
