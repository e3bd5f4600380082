"""The graph engine: SNAP graph XML (:mod:`.graph`) and its runner (:mod:`.runner`)."""
