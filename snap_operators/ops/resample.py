"""``Resample``: put every band of a multi-size product on one grid (SNAP's ResamplingOp).

The target grid comes from exactly one of ``referenceBand`` (that band's grid),
``targetWidth`` + ``targetHeight`` (the scene extent divided into that many
pixels) or ``targetResolution`` (square pixels of that size in CRS units,
SNAP's rule: ``ceil(scene extent / resolution)`` pixels anchored at the
upper-left corner, or at the upper-left pixel centre when all bands share
that instead). Bands already on the target grid are passed through untouched
(same lazy array); the others are regridded lazily with
:func:`snap_operators.grid.regrid.regrid`: ``upsampling`` where target pixels are
smaller, ``downsampling`` where they are larger. Class bands always use
Nearest / First so class values are never blended.

``bandResamplings`` (``band:downsampling:upsampling`` entries separated by
commas) and ``resamplingPreset`` (a ``.res`` file with one such entry per
line) override the methods per band, as in SNAP. ``flagDownsampling`` and
``resampleOnPyramidLevels`` are accepted for compatibility: the standalone
engine has no flag bands and always resamples at full resolution.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from affine import Affine

from ..core.errors import ParameterError
from ..core.operator import Operator, register
from ..core.product import Product
from ..core.spec import OperatorSpec, Parameter, SourceSpec
from ..grid.regrid import output_no_data, regrid, same_transform

log = logging.getLogger(__name__)

#: SNAP upsampling names -> regrid methods.
UPSAMPLING = {"Nearest": "nearest", "Bilinear": "bilinear", "Bicubic": "cubic", "Cubic_Convolution": "cubic"}
#: SNAP downsampling names -> regrid methods.
DOWNSAMPLING = {"First": "first", "Min": "min", "Max": "max", "Mean": "mean", "Median": "median"}
#: SNAP flag downsamplers; without flag bands they act as First.
FLAG_DOWNSAMPLING = ("First", "FlagAnd", "FlagOr", "FlagMedianAnd", "FlagMedianOr")
_USE_OTHERS = "use referenceBand or targetWidth/targetHeight"


@register
class ResampleOp(Operator):
    """Resample a multi-size product to a single-size one."""

    spec = OperatorSpec(
        alias="Resample",
        category="Raster/Geometric",
        description="Resampling of a multi-size source product to a single-size target product.",
        sources=(SourceSpec("sourceProduct", "The source product which is to be resampled."),),
        parameters=(
            Parameter("referenceBand", "String", label="Reference band",
                      description="The band whose size and resolution all other bands are resampled to. "
                                  "Exactly one of referenceBand, targetWidth+targetHeight, targetResolution."),
            Parameter("targetWidth", "int", label="Target width", interval="(0,*)",
                      description="Width (pixels) of every target band; needs targetHeight."),
            Parameter("targetHeight", "int", label="Target height", interval="(0,*)",
                      description="Height (pixels) of every target band; needs targetWidth."),
            Parameter("targetResolution", "int", label="Target resolution", interval="(0,*)", unit="CRS units",
                      description="Pixel size of every target band, in CRS units (metres for UTM)."),
            Parameter("upsampling", "String", default="Nearest", value_set=tuple(UPSAMPLING),
                      label="Upsampling method",
                      description="Interpolation used where target pixels are smaller than source pixels."),
            Parameter("downsampling", "String", default="First", value_set=tuple(DOWNSAMPLING),
                      label="Downsampling method",
                      description="Aggregation used where target pixels are larger than source pixels."),
            Parameter("flagDownsampling", "String", default="First", value_set=FLAG_DOWNSAMPLING,
                      label="Flag downsampling method",
                      description="Aggregation of flag bands (accepted; class bands always use First)."),
            Parameter("resamplingPreset", "String", default="", label="Resampling Preset",
                      description="Path of a .res preset file (band:downsampling:upsampling per line); "
                                  "overrides upsampling/downsampling per band."),
            Parameter("bandResamplings", "String", default="", label="Band Resamplings",
                      description="Comma-separated band:downsampling:upsampling entries; override the preset."),
            Parameter("resampleOnPyramidLevels", "boolean", default=True,
                      description="Accepted for compatibility; resampling is always done at full resolution."),
        ),
    )

    def initialize(self) -> Product:
        src = self.source_product("sourceProduct")
        if not src.bands:
            raise self.error(f"product '{src.name}' has no bands")
        transforms = _band_transforms(src, self)
        shape, transform = self._target_grid(src, transforms)
        per_band = self._band_methods(src)
        up = UPSAMPLING[self.parameters["upsampling"]]
        down = DOWNSAMPLING[self.parameters["downsampling"]]

        bands = []
        for band in src.bands.values():
            t = transforms[band.name]
            if band.shape == shape and same_transform(t, transform):
                bands.append(band)
                continue
            if band.classes:
                band_up, band_down = "nearest", "first"
            else:
                band_up, band_down = per_band.get(band.name, (up, down))
            data = regrid(
                band.data, t, shape, transform, src_crs=src.crs, dst_crs=src.crs,
                upsampling=band_up, downsampling=band_down, no_data=band.no_data,
                tile_size=self.context.tile_size,
            )
            no_data = band.no_data if band.no_data is not None else output_no_data(band.dtype, None)
            changes = dict(data=data, transform=None if band.transform is None else transform, no_data=no_data)
            picks = band_up == "nearest" and (band_down in ("first", "nearest") or not _finer(t, transform))
            if band.stored is not None and picks:
                # only pixel selection: the stored samples go along, selected the same way
                changes["stored"] = band.stored.map(lambda a, t=t, up=band_up, down=band_down: regrid(
                    a, t, shape, transform, src_crs=src.crs, dst_crs=src.crs, upsampling=up, downsampling=down,
                    no_data=band.stored.no_data, tile_size=self.context.tile_size))
            bands.append(band.replace(**changes))
        return src.copy(name=f"{src.name}_resampled", bands=bands)

    # --- parameters -------------------------------------------------------------
    def _param_error(self, message: str) -> ParameterError:
        return ParameterError(str(self.error(message)))

    def _target_grid(self, src: Product, transforms: dict[str, Affine]) -> tuple[tuple[int, int], Affine]:
        p = self.parameters
        ref, width, height, res = p["referenceBand"], p["targetWidth"], p["targetHeight"], p["targetResolution"]
        given = [name for name, v in (("referenceBand", ref), ("targetResolution", res)) if v]
        if width is not None or height is not None:
            given.append("targetWidth/targetHeight")
        if not given:
            raise self._param_error(
                "set one of referenceBand, targetResolution, or targetWidth together with targetHeight"
            )
        if len(given) > 1:
            raise self._param_error(
                f"set only one of referenceBand, targetResolution, targetWidth/targetHeight (got {', '.join(given)})"
            )
        if ref:
            ref = _s2_spelling(ref, src.bands)
            if ref not in src.bands:
                raise self._param_error(
                    f"referenceBand '{ref}' is not in product '{src.name}'; bands: {src.bands_listed()}"
                )
            return src.bands[ref].shape, transforms[ref]
        scene_h, scene_w = src.scene_shape
        scene_t = transforms[src.reference_band().name]
        if res:
            return self._resolution_grid(src, transforms, scene_t, (scene_h, scene_w), res)
        if width is None or height is None:
            raise self._param_error("targetWidth and targetHeight must be set together")
        sx, sy = scene_w / width, scene_h / height
        t = Affine(scene_t.a * sx, scene_t.b * sy, scene_t.c, scene_t.d * sx, scene_t.e * sy, scene_t.f)
        return (height, width), t

    def _resolution_grid(self, src, transforms, scene_t: Affine, scene_shape, res: int):
        if src.crs is None or any(b.transform is None for b in src.bands.values()):
            raise self._param_error(f"targetResolution needs a product with a map CRS; {_USE_OTHERS}")
        if scene_t.b != 0 or scene_t.d != 0:
            raise self._param_error(f"targetResolution needs a north-up grid; {_USE_OTHERS}")
        if _aligned_at(transforms.values(), 0.0):
            x0, y0 = scene_t.c, scene_t.f
        elif _aligned_at(transforms.values(), 0.5):
            x0 = scene_t.c + 0.5 * scene_t.a - 0.5 * res
            y0 = scene_t.f + 0.5 * scene_t.e + 0.5 * res
        else:
            raise self._param_error(
                "targetResolution is not possible: the bands share neither their upper-left corner "
                "nor their upper-left pixel centre"
            )
        h, w = scene_shape
        width = math.ceil(round(w * abs(scene_t.a) / res, 9))
        height = math.ceil(round(h * abs(scene_t.e) / res, 9))
        return (height, width), Affine(res, 0, x0, 0, math.copysign(res, scene_t.e), y0)

    def _band_methods(self, src: Product) -> dict[str, tuple[str, str]]:
        """Per-band (upsampling, downsampling) from resamplingPreset then bandResamplings."""
        entries: list[str] = []
        preset = (self.parameters["resamplingPreset"] or "").strip()
        if preset:
            path = Path(preset)
            if not path.is_file():
                raise self._param_error(f"resamplingPreset '{preset}' not found; give the path of a .res preset file")
            try:
                entries += path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise self._param_error(f"cannot read resamplingPreset '{preset}': {exc}") from None
        entries += (self.parameters["bandResamplings"] or "").split(",")
        methods: dict[str, tuple[str, str]] = {}
        for entry in entries:
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            parts = [x.strip() for x in entry.split(":")]
            if len(parts) < 3:
                raise self._param_error(f"band resampling '{entry}' must read band:downsampling:upsampling")
            name, down, up = parts[:3]
            if up not in UPSAMPLING:
                raise self._param_error(
                    f"band resampling '{entry}': upsampling '{up}' is not one of {', '.join(UPSAMPLING)}"
                )
            if down in DOWNSAMPLING:
                down_method = DOWNSAMPLING[down]
            elif down in FLAG_DOWNSAMPLING:
                down_method = "first"  # no flag bands here: flag aggregators act on bits
            else:
                raise self._param_error(
                    f"band resampling '{entry}': downsampling '{down}' is not one of {', '.join(DOWNSAMPLING)}"
                )
            if name in src.bands:
                methods[name] = (UPSAMPLING[up], down_method)
            else:
                log.info("Resample: band resampling for '%s' ignored: no such band", name)
        return methods


def _band_transforms(src: Product, op: Operator) -> dict[str, Affine]:
    """Each band's geotransform; products without geocoding get pixel grids scaled to the scene."""
    missing = [b.name for b in src.bands.values() if b.transform is None]
    if not missing:
        return {b.name: b.transform for b in src.bands.values()}
    if len(missing) != len(src.bands):
        raise op.error(f"bands {', '.join(missing)} have no geocoding while others have; cannot resample")
    h, w = src.scene_shape
    return {b.name: Affine.scale(w / b.width, h / b.height) for b in src.bands.values()}


def _aligned_at(transforms, offset: float) -> bool:
    """True when all grids share the point `offset` pixels into their upper-left pixel."""
    points = {(round(t.c + offset * t.a, 6), round(t.f + offset * t.e, 6)) for t in transforms}
    return len(points) == 1


def _s2_spelling(name: str, bands) -> str:
    """`name`, or its other Sentinel-2 spelling present in `bands` (``B2`` <-> ``B02``).

    SNAP's products say ``B2``; GeoTIFFs cut from SAFE granules often say
    ``B02``. Accepting both keeps ``referenceBand=B2`` graphs usable on both.
    """
    m = re.fullmatch(r"B0?(\d)", name, flags=re.IGNORECASE)
    if name in bands or not m:
        return name
    for other in (f"B{m[1]}", f"B0{m[1]}"):
        if other in bands:
            return other
    return name


def _finer(source: Affine | None, target: Affine) -> bool:
    """Whether a source grid has smaller pixels than the target along some axis (so it is downsampled)."""
    if source is None:
        return True  # unknown: assume the worst
    return abs(source.a) < abs(target.a) * (1 - 1e-9) or abs(source.e) < abs(target.e) * (1 - 1e-9)
