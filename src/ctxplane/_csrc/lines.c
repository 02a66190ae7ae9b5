/* The trace file's JSON lines, built in C by the recorder's flush thread.
 *
 * format_lines(items, traces, gen, refresh, json_str, attrs_text) returns what
 * "".join(map(Recorder._line, items)) returns (ctxplane/tracing/recorder.py, the reference):
 * one line per buffered event tuple. Strings that need no JSON escaping are copied; any
 * other string goes through json_str (the reference's own encoder), attributes that are not
 * plain str/int/bool values through attrs_text. Anything of an unexpected shape raises, and
 * the caller then builds the whole batch with the reference. */
#include "speedups.h"

#include <string.h>

typedef struct {
    char *buf;
    size_t len, cap;
} writer;

static int
w_reserve(writer *w, size_t more)
{
    if (w->len + more <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more)
        cap *= 2;
    char *buf = PyMem_Realloc(w->buf, cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static int
w_bytes(writer *w, const char *s, size_t n)
{
    if (w_reserve(w, n) < 0)
        return -1;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return 0;
}

#define W_LIT(w, s) w_bytes((w), (s), sizeof(s) - 1)

static int
w_str(writer *w, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL)
        return -1;
    return w_bytes(w, u, (size_t)n);
}

/* x as 16 lowercase hex digits at out (no snprintf: it was a tenth of a line's cost) */
static void
hex16(char *out, unsigned long long x)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[x & 0xf];
        x >>= 4;
    }
}

static int
w_hex64(writer *w, PyObject *v)
{
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (w_reserve(w, 16) < 0)
        return -1;
    hex16(w->buf + w->len, x);
    w->len += 16;
    return 0;
}

static int
w_quoted_hex(writer *w, const char *key, size_t keylen, PyObject *v)
{
    /* ,"key":"%016x" */
    if (w_bytes(w, key, keylen) < 0 || W_LIT(w, "\"") < 0 || w_hex64(w, v) < 0)
        return -1;
    return W_LIT(w, "\"");
}

#define W_QUOTED_HEX(w, key, v) w_quoted_hex((w), (key), sizeof(key) - 1, (v))

/* The str attribute `name` of `obj`, written as it is (the EU's pre-built line parts). */
static int
w_str_attr(writer *w, PyObject *obj, PyObject *name)
{
    PyObject *s = PyObject_GetAttr(obj, name);
    if (s == NULL)
        return -1;
    int r = PyUnicode_Check(s) ? w_str(w, s) : -1;
    if (r < 0 && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "%U: not a str", name);
    Py_DECREF(s);
    return r;
}

static int
w_int(writer *w, PyObject *v)
{
    if (PyLong_CheckExact(v)) { /* (a sequence number, a timestamp: str(int) without a str) */
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            char tmp[24], *p = tmp + sizeof tmp;
            unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
            do {
                *--p = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            if (x < 0)
                *--p = '-';
            return w_bytes(w, p, (size_t)(tmp + sizeof tmp - p));
        }
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL)
        return -1;
    int r = w_str(w, s);
    Py_DECREF(s);
    return r;
}

/* fn(arg), which must return a str (new reference), or NULL with an exception set. */
static PyObject *
call_str(PyObject *fn, PyObject *arg)
{
    PyObject *s = PyObject_CallOneArg(fn, arg);
    if (s != NULL && !PyUnicode_Check(s)) {
        Py_DECREF(s);
        PyErr_SetString(PyExc_TypeError, "format_lines: a formatter returned a non-str");
        return NULL;
    }
    return s;
}

/* A str as json.dumps(ensure_ascii=False) writes it: copied between quotes when no character
 * needs escaping, else through json_str. Anything but an exact str goes through json_str. */
static int
w_json_str(writer *w, PyObject *v, PyObject *json_str)
{
    if (PyUnicode_CheckExact(v) && PyUnicode_IS_ASCII(v)) {
        const unsigned char *p = PyUnicode_1BYTE_DATA(v);
        Py_ssize_t n = PyUnicode_GET_LENGTH(v), i;
        for (i = 0; i < n; i++)
            if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
                break;
        if (i == n) {
            if (w_reserve(w, (size_t)n + 2) < 0)
                return -1;
            w->buf[w->len++] = '"';
            memcpy(w->buf + w->len, p, (size_t)n);
            w->len += (size_t)n;
            w->buf[w->len++] = '"';
            return 0;
        }
    }
    PyObject *s = call_str(json_str, v);
    if (s == NULL)
        return -1;
    int r = w_str(w, s);
    Py_DECREF(s);
    return r;
}

/* The attributes object: 1 written, 0 nothing to write, -1 error. Plain dicts of str keys and
 * exact str/int/bool values are written here, the rest by attrs_text (the reference). */
static int
w_attrs(writer *w, PyObject *attrs, PyObject *json_str, PyObject *attrs_text)
{
    if (PyDict_CheckExact(attrs)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        int plain = 1;
        while (PyDict_Next(attrs, &pos, &k, &v)) {
            PyTypeObject *t = Py_TYPE(v);
            if (!PyUnicode_CheckExact(k)
                || !(t == &PyUnicode_Type || t == &PyLong_Type || t == &PyBool_Type)) {
                plain = 0;
                break;
            }
        }
        if (plain) {
            int first = 1;
            pos = 0;
            if (W_LIT(w, ",\"attrs\":{") < 0)
                return -1;
            while (PyDict_Next(attrs, &pos, &k, &v)) {
                if (!first && W_LIT(w, ",") < 0)
                    return -1;
                first = 0;
                if (w_json_str(w, k, json_str) < 0 || W_LIT(w, ":") < 0)
                    return -1;
                if (v == Py_True) {
                    if (W_LIT(w, "true") < 0)
                        return -1;
                }
                else if (v == Py_False) {
                    if (W_LIT(w, "false") < 0)
                        return -1;
                }
                else if (PyLong_CheckExact(v)) {
                    if (w_int(w, v) < 0)
                        return -1;
                }
                else if (w_json_str(w, v, json_str) < 0)
                    return -1;
            }
            return W_LIT(w, "}");
        }
    }
    PyObject *s = call_str(attrs_text, attrs);
    if (s == NULL)
        return -1;
    int r = 0;
    if (PyUnicode_GET_LENGTH(s) > 0)
        r = (W_LIT(w, ",\"attrs\":") < 0 || w_str(w, s) < 0) ? -1 : 1;
    Py_DECREF(s);
    return r;
}

static int
cmp_u64(const void *a, const void *b)
{
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

static int
w_parents(writer *w, PyObject *parents)
{
    if (!PyTuple_Check(parents)) {
        PyErr_SetString(PyExc_TypeError, "parents: not a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(parents), i;
    unsigned long long small[16], *ids = small;
    if (n > 16) {
        ids = PyMem_Malloc((size_t)n * sizeof *ids);
        if (ids == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    int r = 0;
    for (i = 0; i < n; i++) {
        ids[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(parents, i));
        if (ids[i] == (unsigned long long)-1 && PyErr_Occurred()) {
            r = -1;
            goto done;
        }
    }
    /* fixed-width lowercase hex sorts as the numbers do */
    qsort(ids, (size_t)n, sizeof *ids, cmp_u64);
    if (w_reserve(w, (size_t)n * 19) < 0) {
        r = -1;
        goto done;
    }
    for (i = 0; i < n; i++) { /* ,"%016llx" */
        char *p = w->buf + w->len;
        if (i)
            *p++ = ',';
        *p++ = '"';
        hex16(p, ids[i]);
        p[16] = '"';
        w->len = (size_t)(p + 17 - w->buf);
    }
done:
    if (ids != small)
        PyMem_Free(ids);
    return r;
}

static PyObject *s_line_gen, *s_line_head, *s_line_tail, *s_span_start;

static int
w_item(writer *w, PyObject *item, PyObject *traces, PyObject *gen, PyObject *refresh,
       PyObject *json_str, PyObject *attrs_text)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 11) {
        PyErr_SetString(PyExc_TypeError, "event: not an 11-tuple");
        return -1;
    }
    PyObject *eu = PyTuple_GET_ITEM(item, 0), *seq = PyTuple_GET_ITEM(item, 1),
             *typ = PyTuple_GET_ITEM(item, 2), *ts = PyTuple_GET_ITEM(item, 3),
             *task = PyTuple_GET_ITEM(item, 4), *eid = PyTuple_GET_ITEM(item, 5),
             *parents = PyTuple_GET_ITEM(item, 6), *label = PyTuple_GET_ITEM(item, 7),
             *attrs = PyTuple_GET_ITEM(item, 8), *in_span = PyTuple_GET_ITEM(item, 9),
             *extra = PyTuple_GET_ITEM(item, 10);
    PyObject *eu_gen = PyObject_GetAttr(eu, s_line_gen);
    if (eu_gen == NULL)
        return -1;
    int stale = PyObject_RichCompareBool(eu_gen, gen, Py_NE);
    Py_DECREF(eu_gen);
    if (stale < 0)
        return -1;
    if (stale) {
        PyObject *r = PyObject_CallOneArg(refresh, eu);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    PyObject *trace = PyDict_GetItemWithError(traces, task); /* borrowed */
    if (trace == NULL && PyErr_Occurred())
        return -1;
    if (W_LIT(w, "{\"v\":1,\"trace\":\"") < 0)
        return -1;
    if (trace != NULL && PyObject_IsTrue(trace) == 1) {
        if (!PyUnicode_Check(trace)) {
            PyErr_SetString(PyExc_TypeError, "trace id: not a str");
            return -1;
        }
        if (w_str(w, trace) < 0)
            return -1;
    }
    else if (W_LIT(w, "0000000000000000") < 0 || w_hex64(w, task) < 0)
        return -1;
    if (W_LIT(w, "\",\"task\":\"") < 0 || w_hex64(w, task) < 0
        || W_LIT(w, "\",\"id\":\"") < 0 || w_hex64(w, eid) < 0
        || W_LIT(w, "\",\"parents\":[") < 0 || w_parents(w, parents) < 0
        || W_LIT(w, "],") < 0 || w_str_attr(w, eu, s_line_head) < 0)
        return -1;
    if (W_LIT(w, ",\"seq\":") < 0 || w_int(w, seq) < 0 || W_LIT(w, ",\"type\":") < 0
        || w_json_str(w, typ, json_str) < 0 || W_LIT(w, ",\"ts\":") < 0 || w_int(w, ts) < 0
        || W_LIT(w, ",\"label\":") < 0 || w_json_str(w, label, json_str) < 0
        || w_str_attr(w, eu, s_line_tail) < 0)
        return -1;
    if (extra != Py_None) {
        if (!PyTuple_Check(extra) || PyTuple_GET_SIZE(extra) < 2) {
            PyErr_SetString(PyExc_TypeError, "span fields: not a tuple");
            return -1;
        }
        if (W_QUOTED_HEX(w, ",\"span\":", PyTuple_GET_ITEM(extra, 0)) < 0)
            return -1;
        int start = PyUnicode_Check(typ) ? PyUnicode_Compare(typ, s_span_start) == 0 : 0;
        if (PyErr_Occurred())
            return -1;
        if (start) {
            if (PyTuple_GET_SIZE(extra) < 3) {
                PyErr_SetString(PyExc_TypeError, "span-start fields: not a 3-tuple");
                return -1;
            }
            PyObject *parent = PyTuple_GET_ITEM(extra, 1);
            int has = PyObject_IsTrue(parent);
            if (has < 0)
                return -1;
            if (has && W_QUOTED_HEX(w, ",\"parent_span\":", parent) < 0)
                return -1;
            if (W_LIT(w, ",\"span_kind\":") < 0
                || w_json_str(w, PyTuple_GET_ITEM(extra, 2), json_str) < 0)
                return -1;
        }
        else if (W_LIT(w, ",\"status\":") < 0
                 || w_json_str(w, PyTuple_GET_ITEM(extra, 1), json_str) < 0)
            return -1;
    }
    int has_span = PyObject_IsTrue(in_span);
    if (has_span < 0)
        return -1;
    if (has_span && W_QUOTED_HEX(w, ",\"in_span\":", in_span) < 0)
        return -1;
    int has_attrs = PyObject_IsTrue(attrs);
    if (has_attrs < 0)
        return -1;
    if (has_attrs && w_attrs(w, attrs, json_str, attrs_text) < 0)
        return -1;
    return W_LIT(w, "}\n");
}

static PyObject *
cp_format_lines(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "format_lines(items, traces, gen, refresh, json_str, attrs_text)");
        return NULL;
    }
    PyObject *items = args[0], *traces = args[1];
    if (!PyList_CheckExact(items) || !PyDict_CheckExact(traces)) {
        PyErr_SetString(PyExc_TypeError, "format_lines: items must be a list, traces a dict");
        return NULL;
    }
    writer w = {NULL, 0, 0};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_INCREF(item);
        int r = w_item(&w, item, traces, args[2], args[3], args[4], args[5]);
        Py_DECREF(item);
        if (r < 0) {
            PyMem_Free(w.buf);
            return NULL;
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8(w.buf ? w.buf : "", (Py_ssize_t)w.len, "strict");
    PyMem_Free(w.buf);
    return text;
}

PyMethodDef cp_lines_methods[] = {
    {"format_lines", (PyCFunction)(void (*)(void))cp_format_lines, METH_FASTCALL,
     "format_lines(items, traces, gen, refresh, json_str, attrs_text): the trace file's JSON "
     "lines of buffered events (Recorder._line of each, joined), in C."},
    {NULL, NULL, 0, NULL},
};

int
cp_lines_init(PyObject *module)
{
    (void)module;
    s_line_gen = PyUnicode_InternFromString("line_gen");
    s_line_head = PyUnicode_InternFromString("line_head");
    s_line_tail = PyUnicode_InternFromString("line_tail");
    s_span_start = PyUnicode_InternFromString("span-start");
    if (!s_line_gen || !s_line_head || !s_line_tail || !s_span_start)
        return -1;
    return PyModule_AddFunctions(module, cp_lines_methods);
}
