/* ctxplane._speedups: the module, and what its parts share (the fallback to the reference). */
#include "speedups.h"

PyObject *
cp_fallback(const char *module, const char *name, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    /* module.PURE[name]: the pure-Python function, the reference (never the C one) */
    PyObject *mod = PyImport_ImportModule(module), *pure, *fn, *result;
    if (mod == NULL)
        return NULL;
    pure = PyObject_GetAttrString(mod, "PURE");
    Py_DECREF(mod);
    if (pure == NULL)
        return NULL;
    fn = PyDict_GetItemString(pure, name); /* borrowed */
    if (fn == NULL) {
        Py_DECREF(pure);
        return PyErr_Format(PyExc_RuntimeError, "%s.PURE has no %s", module, name);
    }
    Py_INCREF(fn);
    Py_DECREF(pure);
    result = PyObject_Vectorcall(fn, args, (size_t)nargs, kwnames);
    Py_DECREF(fn);
    return result;
}

PyObject *
cp_baggage_error(PyObject *message)
{
    PyObject *mod = PyImport_ImportModule("ctxplane.baggage.errors"), *cls;
    if (mod == NULL)
        return NULL;
    cls = PyObject_GetAttrString(mod, "BaggageError");
    Py_DECREF(mod);
    if (cls == NULL)
        return NULL;
    PyErr_SetObject(cls, message);
    Py_DECREF(cls);
    return NULL;
}

static int
exec_module(PyObject *module)
{
    if (PyModule_AddFunctions(module, cp_codec_methods) < 0)
        return -1;
    if (cp_task_init(module) < 0)
        return -1;
    if (cp_lines_init(module) < 0)
        return -1;
    if (cp_record_init(module) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ctxplane._speedups",
    .m_doc = "ctxplane's compiled accelerator (optional): the atom codec, lexvarints, the "
             "asyncio task type, the trace recorder's events and the trace file's JSON "
             "lines. The pure-Python modules are the reference.",
    .m_size = 0,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&moduledef);
}
