/* The atom codec and lexvarints in C: merge, serialize/deserialize, the varint codecs.
 * Twins of ctxplane/baggage/atoms.py and lexvarint.py (the reference): same results, same
 * exceptions. Shapes handled here: tuples/lists of exact bytes, exact bytes (or bytearray)
 * input, non-negative int offsets; anything else goes to the Python function (cp_fallback). */
#include "speedups.h"

#define ATOMS "ctxplane.baggage.atoms"
#define LEXVARINT "ctxplane.baggage.lexvarint"
#define MAX_ATOM_LENGTH 0x7FFFFFFFULL

static inline int
bitlen(unsigned int x)
{
    return x ? 32 - __builtin_clz(x) : 0;
}

static inline int
cmp_bytes(PyObject *x, PyObject *y)
{
    Py_ssize_t lx = PyBytes_GET_SIZE(x), ly = PyBytes_GET_SIZE(y);
    int c = memcmp(PyBytes_AS_STRING(x), PyBytes_AS_STRING(y), (size_t)(lx < ly ? lx : ly));
    if (c)
        return c;
    return (lx > ly) - (lx < ly);
}

static PyObject *
tuple_of(PyObject **items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

/* -- merge --------------------------------------------------------------------------------- */

#define FALLBACK ((PyObject *)1)

/* The two-way rule. Returns FALLBACK when an atom it must compare is not exact bytes. */
static PyObject *
merge2(PyObject *a, PyObject *b)
{
    Py_ssize_t la = PySequence_Fast_GET_SIZE(a), lb = PySequence_Fast_GET_SIZE(b);
    PyObject **x = PySequence_Fast_ITEMS(a), **y = PySequence_Fast_ITEMS(b);
    PyObject **out = PyMem_Malloc(sizeof(PyObject *) * (size_t)(la + lb));
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t i = 0, j = 0, o = 0;
    PyObject *result;
    while (i < la && j < lb) {
        if (!PyBytes_CheckExact(x[i]) || !PyBytes_CheckExact(y[j])) {
            PyMem_Free(out);
            return FALLBACK;
        }
        int c = cmp_bytes(x[i], y[j]);
        if (c < 0)
            out[o++] = x[i++];
        else if (c > 0)
            out[o++] = y[j++];
        else {
            out[o++] = x[i++];
            j++;
        }
    }
    while (i < la)
        out[o++] = x[i++];
    while (j < lb)
        out[o++] = y[j++];
    result = tuple_of(out, o);
    PyMem_Free(out);
    return result;
}

typedef struct {
    PyObject **items;
    Py_ssize_t pos, len;
    Py_ssize_t k; /* list number: ties between equal heads go to the lower one */
} head_t;

static inline int
head_less(const head_t *p, const head_t *q)
{
    int c = cmp_bytes(p->items[p->pos], q->items[q->pos]);
    return c < 0 || (c == 0 && p->k < q->k);
}

static void
sift_down(head_t **heap, Py_ssize_t n, Py_ssize_t i)
{
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && head_less(heap[l], heap[m]))
            m = l;
        if (r < n && head_less(heap[r], heap[m]))
            m = r;
        if (m == i)
            return;
        head_t *t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}

static void
sift_up(head_t **heap, Py_ssize_t i)
{
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        if (!head_less(heap[i], heap[p]))
            return;
        head_t *t = heap[i];
        heap[i] = heap[p];
        heap[p] = t;
        i = p;
    }
}

/* The N-way rule (emit the smallest head, advance every list whose head equals it), on a heap
 * of heads. Every head is checked to be exact bytes (else FALLBACK). */
static PyObject *
merge_n(PyObject **lists, Py_ssize_t k)
{
    Py_ssize_t total = 0, hn = 0, o = 0, na;
    head_t *heads = PyMem_Malloc(sizeof(head_t) * (size_t)k);
    head_t **heap = PyMem_Malloc(sizeof(head_t *) * (size_t)k);
    head_t **advanced = PyMem_Malloc(sizeof(head_t *) * (size_t)k);
    PyObject **out = NULL, *result = FALLBACK;
    if (heads == NULL || heap == NULL || advanced == NULL) {
        result = PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        heads[i].items = PySequence_Fast_ITEMS(lists[i]);
        heads[i].len = PySequence_Fast_GET_SIZE(lists[i]);
        heads[i].pos = 0;
        heads[i].k = i;
        total += heads[i].len;
        if (!PyBytes_CheckExact(heads[i].items[0]))
            goto done;
        heap[hn] = &heads[i];
        sift_up(heap, hn++);
    }
    out = PyMem_Malloc(sizeof(PyObject *) * (size_t)(total ? total : 1));
    if (out == NULL) {
        result = PyErr_NoMemory();
        goto done;
    }
    while (hn > 0) {
        PyObject *smallest = heap[0]->items[heap[0]->pos];
        out[o++] = smallest;
        na = 0;
        do {
            advanced[na++] = heap[0];
            heap[0] = heap[--hn];
            sift_down(heap, hn, 0);
        } while (hn > 0 && cmp_bytes(heap[0]->items[heap[0]->pos], smallest) == 0);
        for (Py_ssize_t i = 0; i < na; i++) {
            head_t *h = advanced[i];
            if (++h->pos < h->len) {
                if (!PyBytes_CheckExact(h->items[h->pos]))
                    goto done;
                heap[hn] = h;
                sift_up(heap, hn++);
            }
        }
    }
    result = tuple_of(out, o);
done:
    PyMem_Free(heads);
    PyMem_Free(heap);
    PyMem_Free(advanced);
    PyMem_Free(out);
    return result;
}

static inline int
is_list_or_tuple(PyObject *o)
{
    return PyTuple_CheckExact(o) || PyList_CheckExact(o);
}

static PyObject *
cp_merge(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *a, *b, *result;
    if (nargs < 2)
        goto fallback;
    for (Py_ssize_t i = 0; i < nargs; i++)
        if (!is_list_or_tuple(args[i]))
            goto fallback;
    a = args[0];
    b = args[1];
    if (nargs > 2) {
        PyObject *small[8], **lists = small;
        Py_ssize_t k = 0;
        if (nargs > 8 && (lists = PyMem_Malloc(sizeof(PyObject *) * (size_t)nargs)) == NULL)
            return PyErr_NoMemory();
        for (Py_ssize_t i = 0; i < nargs; i++)
            if (PySequence_Fast_GET_SIZE(args[i]))
                lists[k++] = args[i];
        if (k > 2)
            result = merge_n(lists, k);
        else if (k == 0)
            result = PyTuple_New(0);
        else if (k == 1)
            result = PySequence_Tuple(lists[0]);
        else {
            a = lists[0];
            b = lists[1];
            result = NULL;
        }
        if (lists != small)
            PyMem_Free(lists);
        if (k != 2) {
            if (result == FALLBACK)
                goto fallback;
            return result;
        }
    }
    if (a == b || PySequence_Fast_GET_SIZE(b) == 0)
        return PySequence_Tuple(a);
    if (PySequence_Fast_GET_SIZE(a) == 0)
        return PySequence_Tuple(b);
    result = merge2(a, b);
    if (result != FALLBACK)
        return result;
fallback:
    return cp_fallback(ATOMS, "merge", args, nargs, NULL);
}

/* -- serialize / deserialize --------------------------------------------------------------- */

static inline Py_ssize_t
varint_size(size_t n)
{
    Py_ssize_t k = 1;
    while (n >= 128) {
        n >>= 7;
        k++;
    }
    return k;
}

static PyObject *
cp_serialize(PyObject *self, PyObject *atoms)
{
    PyObject *seq, *result;
    Py_ssize_t total = 0, n;
    if (is_list_or_tuple(atoms)) {
        Py_INCREF(atoms);
        seq = atoms;
    }
    else if ((seq = PySequence_List(atoms)) == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(items[i])) {
            result = cp_fallback(ATOMS, "serialize", &seq, 1, NULL);
            Py_DECREF(seq);
            return result;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
        total += varint_size((size_t)len) + len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result != NULL) {
        unsigned char *w = (unsigned char *)PyBytes_AS_STRING(result);
        for (Py_ssize_t i = 0; i < n; i++) {
            size_t len = (size_t)PyBytes_GET_SIZE(items[i]);
            size_t v = len;
            while (v >= 128) {
                *w++ = (unsigned char)((v & 0x7F) | 0x80);
                v >>= 7;
            }
            *w++ = (unsigned char)v;
            memcpy(w, PyBytes_AS_STRING(items[i]), len);
            w += len;
        }
    }
    Py_DECREF(seq);
    return result;
}

/* atoms._parse: complete atoms, then the overflow marker (or BaggageError when strict). */
static PyObject *
parse(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, int strict)
{
    PyObject *out = PyList_New(0), *atom, *message = NULL, *result;
    if (out == NULL)
        return NULL;
    while (pos < end) {
        unsigned long long n = p[pos];
        if (n < 0x80)
            pos++;
        else {
            int shift = 0, ok = 0;
            n = 0;
            while (pos < end) {
                unsigned char b = p[pos++];
                n |= (unsigned long long)(b & 0x7F) << shift;
                if (b < 0x80) {
                    ok = 1;
                    break;
                }
                shift += 7;
                if (shift > 28) {
                    message = PyUnicode_FromString("varint longer than 5 bytes");
                    goto bad;
                }
            }
            if (!ok) {
                message = PyUnicode_FromString("varint truncated");
                goto bad;
            }
            if (n > MAX_ATOM_LENGTH) {
                message = PyUnicode_FromFormat("atom length %llu is 2**31 or more", n);
                goto bad;
            }
        }
        if ((long long)n > (long long)(end - pos)) {
            message = PyUnicode_FromFormat("atom of %llu bytes runs %lld past the end", n,
                                           (long long)(pos + (Py_ssize_t)n - end));
            goto bad;
        }
        atom = PyBytes_FromStringAndSize((const char *)p + pos, (Py_ssize_t)n);
        if (atom == NULL || PyList_Append(out, atom) < 0) {
            Py_XDECREF(atom);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(atom);
        pos += (Py_ssize_t)n;
    }
    goto done;
bad:
    if (message == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    if (strict) {
        Py_DECREF(out);
        cp_baggage_error(message);
        Py_DECREF(message);
        return NULL;
    }
    Py_DECREF(message);
    atom = PyBytes_FromStringAndSize(NULL, 0);
    if (atom == NULL || PyList_Append(out, atom) < 0) {
        Py_XDECREF(atom);
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(atom);
done:
    result = PyList_AsTuple(out);
    Py_DECREF(out);
    return result;
}

static PyObject *
cp_deserialize(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data, *result;
    int strict = 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != 1 || nkw > 1)
        goto fallback;
    if (nkw == 1) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "strict"))
            goto fallback;
        if ((strict = PyObject_IsTrue(args[1])) < 0)
            return NULL;
    }
    data = args[0];
    if (PyBytes_CheckExact(data))
        return parse((const unsigned char *)PyBytes_AS_STRING(data), 0, PyBytes_GET_SIZE(data),
                     strict);
    if (!PyByteArray_CheckExact(data))
        goto fallback;
    if ((data = PyBytes_FromObject(data)) == NULL)
        return NULL;
    result = parse((const unsigned char *)PyBytes_AS_STRING(data), 0, PyBytes_GET_SIZE(data),
                   strict);
    Py_DECREF(data);
    return result;
fallback:
    return cp_fallback(ATOMS, "deserialize", args, nargs, kwnames);
}

/* -- lexvarints ---------------------------------------------------------------------------- */

static const unsigned char UNSIGNED_MARK[8] = {0x00, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE};
static const unsigned char SIGNED_MARK[8] = {0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF};

static PyObject *
bytes_of(unsigned char *buf, int n, int complement)
{
    if (complement)
        for (int i = 0; i < n; i++)
            buf[i] ^= 0xFF;
    return PyBytes_FromStringAndSize((const char *)buf, n);
}

static void
big_endian(unsigned char *buf, unsigned long long v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        buf[i] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
}

static PyObject *
encode_unsigned(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int reverse,
                const char *name)
{
    unsigned char buf[9];
    unsigned long long v;
    int n;
    if (nargs != 1 || kwnames != NULL || !PyLong_Check(args[0]))
        return cp_fallback(LEXVARINT, name, args, nargs, kwnames);
    v = PyLong_AsUnsignedLongLong(args[0]);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        return PyErr_Format(PyExc_ValueError, "unsigned lexvarint cannot hold %S", args[0]);
    }
    for (n = 1; n <= 8; n++)
        if (v < (1ULL << (7 * n))) {
            big_endian(buf, v, n);
            buf[0] |= UNSIGNED_MARK[n - 1];
            return bytes_of(buf, n, reverse);
        }
    buf[0] = 0xFF;
    big_endian(buf + 1, v, 8);
    return bytes_of(buf, 9, reverse);
}

static PyObject *
encode_signed(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int reverse,
              const char *name)
{
    unsigned char buf[9];
    unsigned long long m;
    long long v;
    int n, overflow;
    if (nargs != 1 || kwnames != NULL || !PyLong_Check(args[0]))
        return cp_fallback(LEXVARINT, name, args, nargs, kwnames);
    v = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (overflow)
        return PyErr_Format(PyExc_ValueError, "signed lexvarint cannot hold %S", args[0]);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    m = v < 0 ? (unsigned long long)~v : (unsigned long long)v;
    for (n = 1; n <= 8; n++)
        if (m < (1ULL << (7 * n - 1))) {
            big_endian(buf, m, n);
            buf[0] |= SIGNED_MARK[n - 1];
            return bytes_of(buf, n, (v < 0) ^ reverse);
        }
    buf[0] = 0xFF;
    big_endian(buf + 1, m, 8);
    buf[1] |= 0x80;
    return bytes_of(buf, 9, (v < 0) ^ reverse);
}

/* (data, offset) as decoders take them: exact bytes and an offset in range, else 0. */
static int
decode_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
            const unsigned char **p, Py_ssize_t *len, Py_ssize_t *off)
{
    if (nargs < 1 || nargs > 2 || kwnames != NULL || !PyBytes_CheckExact(args[0]))
        return 0;
    *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    *len = PyBytes_GET_SIZE(args[0]);
    *off = 0;
    if (nargs == 2) {
        int overflow;
        long long o;
        if (!PyLong_CheckExact(args[1]))
            return 0;
        o = PyLong_AsLongLongAndOverflow(args[1], &overflow);
        if (overflow || o < 0 || o > PY_SSIZE_T_MAX / 2)
            return 0;
        *off = (Py_ssize_t)o;
    }
    return 1;
}

static PyObject *
lexvarint_error(const char *format, long long a, long long b)
{
    PyObject *message = strchr(format, '%') ? PyUnicode_FromFormat(format, a, b)
                                            : PyUnicode_FromString(format);
    if (message != NULL) {
        cp_baggage_error(message);
        Py_DECREF(message);
    }
    return NULL;
}

static PyObject *
value_consumed(PyObject *value, int n)
{
    PyObject *result;
    if (value == NULL)
        return NULL;
    result = Py_BuildValue("(Ni)", value, n);
    return result;
}

/* The unsigned decoder on n bytes at q (already complemented if need be). */
static unsigned long long
unsigned_value(const unsigned char *q, int n)
{
    unsigned long long v = 0;
    if (n == 9)
        q++;
    for (int i = 0; i < (n == 9 ? 8 : n); i++)
        v = (v << 8) | q[i];
    return n == 9 ? v : v & ((1ULL << (7 * n)) - 1);
}

static PyObject *
decode_unsigned(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int reverse,
                const char *name)
{
    const unsigned char *p;
    unsigned char chunk[9];
    Py_ssize_t len, off;
    int n;
    if (!decode_args(args, nargs, kwnames, &p, &len, &off))
        return cp_fallback(LEXVARINT, name, args, nargs, kwnames);
    if (off >= len)
        return lexvarint_error("lexvarint: no bytes to decode", 0, 0);
    n = 9 - bitlen((unsigned)(p[off] ^ (reverse ? 0 : 0xFF)));
    if (!reverse && p[off] < 0x80)
        n = 1;
    if (off + n > len)
        return lexvarint_error("lexvarint: needs %lld bytes, %lld left", n, len - off);
    for (int i = 0; i < n; i++)
        chunk[i] = reverse ? p[off + i] ^ 0xFF : p[off + i];
    return value_consumed(PyLong_FromUnsignedLongLong(unsigned_value(chunk, n)), n);
}

static PyObject *
decode_signed(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int reverse,
              const char *name)
{
    const unsigned char *p;
    Py_ssize_t len, off;
    unsigned long long raw = 0, m;
    unsigned int first;
    int n, negative;
    long long value;
    if (!decode_args(args, nargs, kwnames, &p, &len, &off))
        return cp_fallback(LEXVARINT, name, args, nargs, kwnames);
    if (off >= len)
        return lexvarint_error("lexvarint: no bytes to decode", 0, 0);
    first = p[off];
    negative = first < 0x80;
    if (negative)
        first ^= 0xFF;
    if (first == 0xFF) {
        unsigned int second;
        if (off + 1 >= len)
            return lexvarint_error("lexvarint: signed value truncated", 0, 0);
        second = p[off + 1];
        if (negative)
            second ^= 0xFF;
        n = second & 0x80 ? 9 : 8;
    }
    else
        n = 8 - bitlen(first ^ 0xFF);
    if (off + n > len)
        return lexvarint_error("lexvarint: needs %lld bytes, %lld left", n, len - off);
    for (int i = (n > 8 ? n - 8 : 0); i < n; i++)
        raw = (raw << 8) | p[off + i];
    if (negative)
        raw = ~raw;
    m = n == 9 ? raw & ((1ULL << 63) - 1) : raw & ((1ULL << (7 * n - 1)) - 1);
    value = negative ? -(long long)m - 1 : (long long)m;
    if (reverse)
        value = ~value; /* -(value + 1) */
    return value_consumed(PyLong_FromLongLong(value), n);
}

#define LEX(fn, impl, reverse)                                                               \
    static PyObject *fn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,             \
                        PyObject *kwnames)                                                   \
    {                                                                                        \
        return impl(args, nargs, kwnames, reverse, #fn + 3);                                 \
    }
LEX(cp_encode_unsigned, encode_unsigned, 0)
LEX(cp_encode_unsigned_reverse, encode_unsigned, 1)
LEX(cp_encode_signed, encode_signed, 0)
LEX(cp_encode_signed_reverse, encode_signed, 1)
LEX(cp_decode_unsigned, decode_unsigned, 0)
LEX(cp_decode_unsigned_reverse, decode_unsigned, 1)
LEX(cp_decode_signed, decode_signed, 0)
LEX(cp_decode_signed_reverse, decode_signed, 1)

/* wire.limits.check_atoms: what makes well-framed atoms malformed, or None. */
static PyObject *
cp_check_atoms(PyObject *self, PyObject *atoms)
{
    (void)self;
    if (!PyTuple_CheckExact(atoms))
        return cp_fallback("ctxplane.wire.limits", "check_atoms", &atoms, 1, NULL);
    Py_ssize_t n = PyTuple_GET_SIZE(atoms);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(atoms, i);
        if (!PyBytes_CheckExact(a))
            return cp_fallback("ctxplane.wire.limits", "check_atoms", &atoms, 1, NULL);
        Py_ssize_t len = PyBytes_GET_SIZE(a);
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(a);
        if (len == 0 || p[0] == 0) /* a data atom (prefix 0x00) or the overflow marker */
            continue;
        if (p[0] < 0x80 || p[0] & 0x02) {
            static const char hex[] = "0123456789abcdef";
            char msg[] = "unknown prefix 0x??";
            msg[sizeof msg - 3] = hex[p[0] >> 4];
            msg[sizeof msg - 2] = hex[p[0] & 0xf];
            return PyUnicode_FromString(msg);
        }
        if (!(p[0] & 0x04)) { /* indexed header: its index (unsigned lexvarint) must decode */
            if (len < 2 || (p[1] >= 0x80 && len < 10 - bitlen(p[1] ^ 0xFF)))
                return PyUnicode_FromString("truncated index in a bag header");
        }
    }
    Py_RETURN_NONE;
}

#define KW (METH_FASTCALL | METH_KEYWORDS)
PyMethodDef cp_codec_methods[] = {
    {"check_atoms", cp_check_atoms, METH_O, "check_atoms(atoms): wire.limits.check_atoms in C."},
    {"merge", (PyCFunction)(void (*)(void))cp_merge, METH_FASTCALL,
     "merge(a, b, *more): atoms.merge in C."},
    {"serialize", cp_serialize, METH_O, "serialize(atoms): atoms.serialize in C."},
    {"deserialize", (PyCFunction)(void (*)(void))cp_deserialize, KW,
     "deserialize(data, *, strict=False): atoms.deserialize in C."},
    {"encode_unsigned", (PyCFunction)(void (*)(void))cp_encode_unsigned, KW, NULL},
    {"encode_unsigned_reverse", (PyCFunction)(void (*)(void))cp_encode_unsigned_reverse, KW,
     NULL},
    {"encode_signed", (PyCFunction)(void (*)(void))cp_encode_signed, KW, NULL},
    {"encode_signed_reverse", (PyCFunction)(void (*)(void))cp_encode_signed_reverse, KW, NULL},
    {"decode_unsigned", (PyCFunction)(void (*)(void))cp_decode_unsigned, KW, NULL},
    {"decode_unsigned_reverse", (PyCFunction)(void (*)(void))cp_decode_unsigned_reverse, KW,
     NULL},
    {"decode_signed", (PyCFunction)(void (*)(void))cp_decode_signed, KW, NULL},
    {"decode_signed_reverse", (PyCFunction)(void (*)(void))cp_decode_signed_reverse, KW, NULL},
    {NULL, NULL, 0, NULL},
};
