"""The core: what every layer builds on, and nothing of the science.

Products and bands (:mod:`.product`), declarative operator specs
(:mod:`.spec`), the operator base with its tile kernel and sink protocol
(:mod:`.operator`), streaming (:mod:`.streaming`, :mod:`.cluster`), staged
and atomic outputs (:mod:`.staging`, :mod:`.outputs`), errors and limits,
safe XML, the land-cover legend (:mod:`.legend`) and SNAP's band-maths
expression language (:mod:`.expressions`, SNAP's ``jexp``, which the
BEAM-DIMAP reader needs for virtual bands, as in snap-core).
"""
