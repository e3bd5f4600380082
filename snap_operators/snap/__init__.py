"""Running the project's operators inside ESA SNAP (10+) as SNAP Python operators.

:mod:`.adapter` turns an operator of this project into the class SNAP's
``PyOperator`` drives (``initialize`` / ``computeTile`` / ``dispose``);
``plugin/`` holds the thin modules and descriptors SNAP loads. Nothing here
imports ``esa_snappy`` at import time: SNAP's Java API is reached only while
SNAP runs an operator (or through a stand-in passed in tests).
"""
