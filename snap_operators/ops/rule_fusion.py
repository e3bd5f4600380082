"""``RuleFusion``: the Progressive Classifier's class where its thresholds are sure, a network's elsewhere.

Sources ``rules`` (``ProgressiveClassifier`` with ``outputMargin=true``: bands
``class_id`` and ``margin``) and ``network`` (``AttentionUNetInference``: band
``class_id``), on one grid; or two unnamed sources in that order. A pixel
keeps the rules' class where their margin reaches ``minMargin`` (in scene
interquartile ranges of the deciding index) and takes the network's
elsewhere: next to a threshold, and where the rules left it unclassified
(:mod:`snap_operators.science.fusion`; why and how much, ``docs/unet.md``).
``minMargin=Infinity`` gives the network's map unchanged, without computing a pixel of the
rules (their node still resolves its scene-adaptive thresholds).

The rules' product may also be their class map written to a file with its margin (a float32
GeoTIFF: the writer promotes both bands), whose class band is then read as it is.

The target has the network's grid, legend and no-data, and with
``outputSource`` a band ``fusion_source``: 1 where the class is the rules',
2 where it is the network's, 0 where the network has no data.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..core.errors import OperatorError
from ..core.legend import NO_DATA
from ..core.operator import Operator, TileKernel, map_tiles, register
from ..core.product import Band, Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec, TargetBandSpec
from ..science import change, fusion
from .bandmerge import grid_mismatch

#: The rules' margin band (``ProgressiveClassifier`` ``outputMargin``).
MARGIN_BAND = "margin"


@register
class RuleFusionOp(Operator):
    """Keep the rules' class where their margin is large, the network's elsewhere."""

    spec = OperatorSpec(
        alias="RuleFusion",
        category="Optical/Thematic Land Processing",
        label="Rule Fusion",
        description="Land-cover map from the Progressive Classifier and a network: the rules' class where their "
        "margin reaches minMargin (they are sure), the network's next to a threshold and where the rules left "
        "a pixel unclassified.",
        sources=(
            SourceSpec("rules", "ProgressiveClassifier's target with outputMargin=true (class_id, margin).",
                       optional=True),
            SourceSpec("network", "The network's class map (AttentionUNetInference), on the rules' grid.",
                       optional=True),
            SourceSpec("sourceProducts", "rules and network, in this order (when not named).", optional=True,
                       multiple=True),
        ),
        parameters=(
            Parameter("minMargin", "double", default=fusion.DEFAULT_MIN_MARGIN, interval="[0,*]",
                      label="Least rule margin",
                      description="Margin (scene interquartile ranges of the deciding index) from which the rules' "
                      "class is kept; Infinity: the network's map unchanged (docs/unet.md)."),
            Parameter("sourceBand", "String", label="Class band",
                      description="Class band of both products; empty: class_id, else the product's only band "
                      "with classes."),
            Parameter("outputSource", "boolean", default=False, label="Output source band",
                      description="Add a uint8 band 'fusion_source': 1 the rules' class, 2 the network's, "
                      "0 no-data."),
        ),
        target_bands=(
            TargetBandSpec("class_id", "uint8", None, "The fused class; the network's no-data."),
            TargetBandSpec("fusion_source", "uint8", None, "1 rules, 2 network, 0 no-data (outputSource)."),
        ),
    )

    def initialize(self) -> Product:
        ids = self.named_sources(("rules", "network"), "products")
        rules, network = self.sources[ids["rules"]], self.sources[ids["network"]]
        if MARGIN_BAND not in rules.bands:
            raise self.error(f"product '{rules.name}' has no band '{MARGIN_BAND}': set outputMargin to true on "
                             f"its ProgressiveClassifier")
        r_band, n_band = self._class_band(rules, margin_file=True), self._class_band(network)
        margin = rules.band(MARGIN_BAND)
        problem = grid_mismatch(network, rules, 1e-5)
        if problem or r_band.shape != n_band.shape:
            raise self.error(f"'{rules.name}' and '{network.name}' are not on one grid "
                             f"({problem or 'different sizes'}); put a Collocate node before {self.spec.alias}")
        diff = (change.legend_differences(r_band.classes, n_band.classes)
                if r_band.classes and n_band.classes else [])
        if diff:
            raise self.error(f"'{rules.name}' and '{network.name}' have different class legends: {'; '.join(diff)}")
        p = self.parameters
        min_margin = float(p["minMargin"])
        source = bool(p["outputSource"])
        n_no_data = NO_DATA if n_band.no_data is None else int(n_band.no_data)
        func = functools.partial(fusion.fusion_tile, min_margin=min_margin, source=source, network_no_data=n_no_data)
        outputs = {"class_id": n_band.dtype, **({"fusion_source": np.uint8} if source else {})}
        chunks = n_band.data.chunks
        inputs, names, sources = {"network": n_band.data}, {"network": n_band.name}, {"network": ids["network"]}
        if not math.isinf(min_margin):  # Infinity keeps no class of the rules: their pixels are never computed
            inputs.update(rules=r_band.data.rechunk(chunks), margin=margin.data.rechunk(chunks))
            names.update(rules=r_band.name, margin=MARGIN_BAND)
            sources.update(rules=ids["rules"], margin=ids["rules"])
        arrays = map_tiles(func, inputs, outputs)
        self._kernel = TileKernel(func=func, inputs=names, outputs=outputs, sources=sources)
        bands = [n_band.replace(name="class_id", data=arrays["class_id"],
                                description=f"Class of {rules.name} where its rule margin >= {min_margin:g}, "
                                f"else of {network.name}; {n_no_data} no-data")]
        if source:
            bands.append(Band("fusion_source", arrays["fusion_source"], n_band.transform, no_data=0, unit=None,
                              description=f"Where the class comes from: {fusion.RULES} rules, {fusion.NETWORK} "
                              "network, 0 no-data"))
        target = network.copy(name=f"{network.name}_fused", bands=bands)
        target.metadata.add_element(self.spec.alias, rules=rules.name, network=network.name, minMargin=min_margin,
                                    classBandRules=r_band.name, classBandNetwork=n_band.name)
        return target

    def tile_kernel(self) -> TileKernel:
        """The fusion over tiles of the rules' class and margin and the network's class (one grid)."""
        return self._kernel

    def _class_band(self, product: Product, margin_file: bool = False) -> Band:
        """The class band of `product`; with `margin_file`, also a float one: a class map written with
        its margin band is float32 in GeoTIFF (the writer promotes, as SNAP's does), classes and
        no-data (255) kept as whole numbers."""
        name = self.parameters.get("sourceBand") or change.DEFAULT_CLASS_BAND
        if margin_file and name in product.bands and product.band(name).dtype.kind == "f":
            return product.band(name)
        try:
            return change.find_class_band(product, self.parameters.get("sourceBand"), hint="set sourceBand")
        except OperatorError as exc:
            raise self.error(str(exc)) from None
