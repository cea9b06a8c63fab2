"""Client formats: one module each, decoding requests into IR and encoding IR back."""
