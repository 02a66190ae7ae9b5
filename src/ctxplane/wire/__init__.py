"""Wire formats: Tracing Plane header encodings and W3C Trace Context / Baggage interop."""
