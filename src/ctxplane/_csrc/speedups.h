/* ctxplane._speedups: shared declarations of the compiled accelerator.
 *
 * The pure-Python modules are the reference: every function here returns what its Python
 * twin returns and raises what it raises. Inputs of a shape the C code does not handle
 * (not bytes, negative offsets...) are handed to the Python function itself (cp_fallback). */
#ifndef CTXPLANE_SPEEDUPS_H
#define CTXPLANE_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Call the pure-Python function `name` of module `module` (imported on first use). */
PyObject *cp_fallback(const char *module, const char *name, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames);
/* Raise ctxplane.baggage.errors.BaggageError(message). Returns NULL. */
PyObject *cp_baggage_error(PyObject *message);

/* codec.c */
extern PyMethodDef cp_codec_methods[];

/* lines.c */
int cp_lines_init(PyObject *module);

/* record.c */
int cp_record_init(PyObject *module);

/* task.c */
int cp_task_init(PyObject *module);
extern PyMethodDef cp_task_methods[];

#endif
