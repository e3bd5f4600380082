"""Limits on untrusted inputs, checked before any work that grows with them.

Every input a user hands in (graph XML, rule files, products, models,
parameters) is bounded here, in one place, so that a small hostile file
cannot cost minutes or gigabytes before it is refused. Each limit is named in
the one-line error that refuses it; ``docs/reliability.md`` lists them with
their messages. The values sit far above what real inputs need (the figures
in the comments) and far below what would hurt a 2-core, 8 GiB machine.
"""

from __future__ import annotations

# --- graphs ----------------------------------------------------------------------------------
#: Bytes of a graph file read. The shipped graphs are under 20 KiB; a graph
#: that large is text nobody wrote by hand, and reading stops here (a device
#: such as /dev/zero never ends).
MAX_GRAPH_BYTES = 4 << 20
#: Nodes of a graph. Real SNAP graphs have tens of nodes; each node costs the
#: engine an operator initialization and Dask graph layers (a 10,000-node
#: graph built for 55 s and 3.4 GB).
MAX_GRAPH_NODES = 500
#: Longest chain of sources (node -> its source -> ...). Real chains are
#: under 20 nodes; the bound keeps every walk over the graph short.
MAX_GRAPH_DEPTH = 128
#: Element nesting of an XML document (graphs, product headers). Real
#: documents nest under 12 levels; deeper ones are refused before anything
#: walks them.
MAX_XML_DEPTH = 64

# --- rule files ------------------------------------------------------------------------------
#: Bytes of a rule file; the presets are under 10 KiB.
MAX_RULE_FILE_BYTES = 1 << 20
#: Stages of a rule set (the presets have 6 to 9).
MAX_STAGES = 64
#: Conditions in one list (a stage's ``conditions`` or one ``any`` group).
MAX_CONDITIONS = 32
#: ``any`` groups of one stage.
MAX_GROUPS = 16
#: Conditions of a whole rule set, groups included (the presets have under
#: 25). The classifier compiles one numba kernel per rule structure whose
#: compile time grows faster than linearly with this count: 128 conditions
#: compile in about 3.5 s and 300 MiB however they are split into stages and
#: groups; 512 took 43 s and 1.1 GiB, and larger rule sets crashed LLVM.
MAX_RULE_CONDITIONS = 128
#: YAML/JSON nodes of a rule file with its aliases expanded. A YAML alias
#: reuses a node, so 500 bytes of nested aliases stand for billions of nodes
#: (66 s and 7.9 GB to refuse before this bound); a legal rule set has a few
#: thousand.
MAX_RULE_NODES = 100_000
#: Nesting of a rule file's mappings and lists (real files: under 10).
MAX_RULE_DEPTH = 32

# --- products --------------------------------------------------------------------------------
#: Decompressed bytes of an archive member read into memory (SAFE metadata:
#: MTD_MSIL2A.xml is about 60 KiB, MTD_TL.xml under 1 MiB).
MAX_MEMBER_BYTES = 32 << 20
#: Pixels of one band. A Sentinel-2 tile is 1.2e8 px; 2**31 (46,341 px
#: square) is beyond any single scene and keeps the Dask graph of a band
#: under 10,000 chunks at the default tile size.
MAX_BAND_PIXELS = 2**31
#: How many times its file size a raster's bands may claim to hold. DEFLATE
#: cannot beat 1032:1 and LZW, ZSTD or JPEG 2000 on real imagery stay far
#: below 10,000:1; a 1 KB GeoTIFF claiming 1e6 x 1e6 px is a lie that would
#: otherwise be read as terabytes of zeros.
MAX_COMPRESSION_RATIO = 10_000
#: File size counted at least this much in the ratio above, so that tiny
#: constant test rasters (headers and a few tiles) are not refused.
MIN_RATIO_FILE_BYTES = 64 << 10

# --- models ----------------------------------------------------------------------------------
#: Halo of a U-Net window, from the model's metadata or the ``halo``
#: parameter (whose interval is the same): the trained models use 32 to 64.
MAX_HALO = 1024
#: Bytes of one inference batch (inputs and class probabilities, float32).
#: A model's metadata chooses the halo and may fix the input size; without
#: this bound a model file alone could ask for a 15 GiB window.
MAX_INFERENCE_BATCH_BYTES = 1 << 30

# --- messages --------------------------------------------------------------------------------
#: Characters of a one-line error message: enough for the input's name, the
#: problem and the fix (the input guards' messages, which spell out the fix,
#: reach 500), while a 10 MB node id must not become a 10 MB line.
MAX_ERROR_CHARS = 1000
