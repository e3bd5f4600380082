"""The ``Write`` operator (SNAP's ``WriteOp``): stream a product to disk.

Formats: ``BEAM-DIMAP`` (SNAP's default), ``GeoTIFF``, ``GeoTIFF-BigTIFF``
and ``COG``. As in SNAP, the format's extension is appended to ``file``
unless the name already ends with it (``out`` -> ``out.dim``/``out.tif``).

The output is created under a hidden staged name in the target folder,
verified once every chunk was written, and renamed into place only when
every other output of the run is complete too; on any failure the staged
files are removed, so a run never leaves a half-written product. BEAM-DIMAP keeps each band at its own size (SNAP writes multi-size
products too); GeoTIFF refuses multi-size products.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import ProductWriteError, SnapPcError, in_node
from ..core.operator import Operator, register
from ..core.outputs import output_problem
from ..core.product import Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..core.streaming import SinkPlan
from ..io.dimap import DimapWriter, dimap_paths
from ..io.geotiff_writer import FORMATS as GEOTIFF_FORMATS
from ..io.geotiff_writer import GeoTiffWriter, geotiff_path

FORMAT_NAMES = ("BEAM-DIMAP", "GeoTIFF", "GeoTIFF-BigTIFF", "COG")


@register
class Write(Operator):
    """Writes a data product to a file."""

    spec = OperatorSpec(
        alias="Write",
        description="Writes a data product to a file.",
        category="Input-Output",
        sources=(SourceSpec("sourceProduct", "The source product to be written."),),
        parameters=(
            Parameter(
                "file", "File", required=True, description="The output file to which the data product is written."
            ),
            Parameter(
                "formatName",
                "String",
                default="BEAM-DIMAP",
                value_set=FORMAT_NAMES,
                description="The name of the output file format.",
            ),
            Parameter(
                "deleteOutputOnFailure",
                "boolean",
                default=True,
                description="Accepted for SNAP compatibility; outputs of a failed run are always removed.",
            ),
            Parameter(
                "writeEntireTileRows",
                "boolean",
                default=False,
                description="Accepted for SNAP compatibility; ignored (chunks are streamed as computed).",
            ),
            Parameter(
                "clearCacheAfterRowWrite",
                "boolean",
                default=False,
                description="Accepted for SNAP compatibility; ignored (no tile cache to clear).",
            ),
        ),
        sink=True,
    )

    #: Parameters naming what this node writes (all others that name files are read).
    output_parameters = ("file",)

    # --- GPF ------------------------------------------------------------------
    def initialize(self) -> Product:
        """Check the source against the format; the target is the source itself."""
        source = self.source_product()
        if not source.bands:
            raise self.error(f"product '{source.name}' has no bands to write")
        fmt = self.format_name
        if fmt in GEOTIFF_FORMATS and source.is_multi_size:
            sizes = sorted({f"{b.width}x{b.height}" for b in source.bands.values()})
            raise self.error(
                f"{fmt} cannot hold bands of different sizes ({', '.join(sizes)}); add a Resample node before Write"
            )
        self.outputs = []
        self._writer = self._make_writer(source)  # no side effect: validates names and dtypes early
        return source

    @property
    def format_name(self) -> str:
        return self.parameters.get("formatName") or "BEAM-DIMAP"

    @property
    def output_path(self) -> Path:
        """The final output file, with the format's extension ensured."""
        raw = self.parameters.get("file")
        if not raw:
            raise self._fail("parameter 'file' is required")
        path = Path(os.path.expanduser(str(raw))).absolute()
        return dimap_paths(path)[0] if self.format_name == "BEAM-DIMAP" else geotiff_path(path)

    def _final_paths(self) -> list[Path]:
        path = self.output_path
        return list(dimap_paths(path)) if self.format_name == "BEAM-DIMAP" else [path]

    # --- sink protocol ------------------------------------------------------------
    def prepare(self) -> None:
        """Check the target without touching the disk.

        Raises
        ------
        ProductWriteError
            The target is one of the graph's inputs, already exists (without
            ``overwrite``), or its folder is missing or not writable.
        """
        problem = output_problem(self._final_paths(), self.context, folder_suffix=".data")
        if problem:
            raise self._fail(problem)

    def open(self) -> SinkPlan:
        """Create the temporary output; chunks go to the returned targets."""
        writer = getattr(self, "_writer", None) or self._make_writer(self.target or self.source_product())
        self._writer = None  # a writer is opened once
        try:
            targets = writer.open()
        except SnapPcError as exc:
            raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None

        def finish() -> None:
            try:
                writer.finish()
            except SnapPcError as exc:
                raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None

        def publish() -> None:
            try:
                writer.publish()
            except SnapPcError as exc:
                raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None
            self.outputs = list(writer.outputs)

        return SinkPlan(writer.arrays, targets, finish, writer.abort, description=f"{self.format_name} {writer.path}",
                        publish=publish)

    def output_files(self) -> list[Path]:
        """Every path this node writes: the product and its side files (``.aux.xml``; ``.data`` of BEAM-DIMAP)."""
        path = self.output_path
        if self.format_name == "BEAM-DIMAP":
            return list(dimap_paths(path))
        return [path, Path(f"{path}.aux.xml")]

    # --- helpers ----------------------------------------------------------------
    def _make_writer(self, product: Product) -> DimapWriter | GeoTiffWriter:
        try:
            if self.format_name == "BEAM-DIMAP":
                return DimapWriter(product, self.output_path)
            return GeoTiffWriter(product, self.output_path, self.format_name)
        except SnapPcError as exc:
            raise in_node(exc, self.node_id, self.spec.alias, ProductWriteError) from None

    def _fail(self, message: str) -> ProductWriteError:
        return ProductWriteError(str(self.error(message)))
