"""`snap-pc dataset`: patches from a product and label masks, spatial-block splits, shards (no TensorFlow)."""

from __future__ import annotations

import fiona
import numpy as np
import pytest
import rasterio
from fiona.transform import transform_geom
from shapely.affinity import translate
from shapely.geometry import mapping, shape
from snap_pc_models.dataset import (
    DatasetError,
    assign_blocks,
    build_dataset,
    load_dataset_info,
    open_split,
    patch_origins,
    rule_labels,
    split_sizes,
)

from snap_operators.apps.cli import main
from snap_operators.apps.synth import write_synthetic_scene
from snap_operators.core.context import ExecutionContext
from snap_operators.engine.runner import load_graph, run_graph

GRAPHS = __import__("pathlib").Path(__file__).resolve().parents[2] / "graphs"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 512² synthetic scene, its rule-based class map and label masks."""
    out = tmp_path_factory.mktemp("unet-ds")
    paths = write_synthetic_scene(out / "scene", 512, 3)
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml",
                         {"input": str(paths["s2"]), "output": str(out / "classes.tif"), "labels": str(out / "labels.gpkg"),
                          "minArea": "0"}),
              ExecutionContext(overwrite=True))
    return {**paths, "classes": out / "classes.tif", "labels": out / "labels.gpkg", "dir": out}


def test_zero_padded_band_names_stand_for_the_model_bands(scene, tmp_path):
    """A GeoTIFF named B02, B03... (eo-learn's Slovenia scene) trains as B2, B3..., as inference reads
    it; the dataset was once refused ("train without them: --bands B11,B12")."""
    import shutil

    padded = tmp_path / "padded.tif"
    shutil.copy(scene["s2"], padded)
    with rasterio.open(padded, "r+") as ds:
        names = list(ds.descriptions)
        for i, n in enumerate(names, start=1):
            if n and n[1:].isdigit() and len(n) == 2:
                ds.set_band_description(i, f"B0{n[1]}")
        assert "B02" in ds.descriptions
    a = build_dataset(scene["s2"], scene["labels"], tmp_path / "a", patch_size=64, block_size=128, seed=1)
    b = build_dataset(padded, scene["labels"], tmp_path / "b", patch_size=64, block_size=128, seed=1)
    assert a["bands"] == b["bands"] == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "MNDWI", "NDBI", "BSI"]
    np.testing.assert_array_equal(np.concatenate(open_split(tmp_path / "a", a, "train")[0]),
                                  np.concatenate(open_split(tmp_path / "b", b, "train")[0]))


def _pixels(info, split):
    covered = np.zeros((info["height"], info["width"]), bool)
    p = info["patch_size"]
    for shard in info["splits"][split]["shards"]:
        for r, c in shard["origins"]:
            covered[r:r + p, c:c + p] = True
    return covered


def test_splits_share_no_pixel_and_stats_come_from_train(scene, tmp_path):
    info = build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", patch_size=32, stride=16, block_size=128,
                         shard_size=10, seed=2)
    assert info["bands"] == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "MNDWI", "NDBI", "BSI"]
    masks = {s: _pixels(info, s) for s in ("train", "val", "test")}
    assert all(m.any() for m in masks.values())
    assert not (masks["train"] & masks["val"]).any()
    assert not (masks["train"] & masks["test"]).any()
    assert not (masks["val"] & masks["test"]).any()
    # overlapping strides: patches straddling two splits were dropped, and counted
    assert info["dropped"]["straddling"] > 0
    # shards: several per split, of at most shard_size patches, memory-mappable
    xs, ys = open_split(tmp_path / "ds", info, "train")
    assert len(xs) > 1 and all(len(x) <= 10 for x in xs)
    assert xs[0].shape[1:] == (32, 32, 10) and xs[0].dtype == np.float32 and ys[0].dtype == np.uint8
    x_train = np.concatenate([np.asarray(x) for x in xs]).reshape(-1, 10).astype(np.float64)
    np.testing.assert_allclose(info["norm_mean"], x_train.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(info["norm_std"], x_train.std(axis=0), rtol=1e-4)
    x_val = np.concatenate([np.asarray(x) for x in open_split(tmp_path / "ds", info, "val")[0]]).reshape(-1, 10)
    assert not np.allclose(info["norm_mean"], x_val.mean(axis=0), rtol=1e-3)  # val pixels did not count


def test_patches_hold_the_product_pixels_and_rasterized_labels(scene, tmp_path):
    info = build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", patch_size=64, seed=0)
    shard = info["splits"]["test"]["shards"][0]
    x = np.load(tmp_path / "ds" / shard["x"])
    y = np.load(tmp_path / "ds" / shard["y"])
    r, c = shard["origins"][0]
    with rasterio.open(scene["s2"]) as src:
        names = list(src.descriptions)
        b4 = src.read(names.index("B4") + 1, window=((r, r + 64), (c, c + 64)))
    np.testing.assert_array_equal(x[0, :, :, 2], b4)
    with rasterio.open(scene["classes"]) as src:
        cls = src.read(1, window=((r, r + 64), (c, c + 64)))
    # LabelMaskExport's polygons (minArea 0) rasterized back give the class map
    assert (y[0] == np.where(cls == 255, 0, cls)).mean() > 0.999


def test_class_raster_and_reprojected_vector_labels(scene, tmp_path):
    a = build_dataset(scene["s2"], scene["classes"], tmp_path / "a", patch_size=64, seed=0)
    # the same polygons in geographic coordinates land on the same pixels
    with fiona.open(scene["labels"]) as src:
        schema, crs = src.schema, src.crs_wkt
        feats = [(transform_geom(crs, "EPSG:4326", dict(f.geometry.__geo_interface__)), dict(f.properties)) for f in src]
    # GeoJSON: fiona cannot write a GeoPackage once TensorFlow is imported (its SQLite has no R*Tree),
    # which other test modules of this process may have done
    with fiona.open(tmp_path / "ll.geojson", "w", driver="GeoJSON", crs="EPSG:4326", schema=schema) as dst:
        for g, p in feats:
            dst.write({"geometry": g, "properties": p})
    b = build_dataset(scene["s2"], tmp_path / "ll.geojson", tmp_path / "b", patch_size=64, seed=0)
    assert a["splits"]["train"]["patches"] == b["splits"]["train"]["patches"]
    ya = np.load(tmp_path / "a" / a["splits"]["train"]["shards"][0]["y"])
    yb = np.load(tmp_path / "b" / b["splits"]["train"]["shards"][0]["y"])
    assert (ya == yb).mean() > 0.98  # reprojection moves boundary pixels only


def test_only_the_classifiers_own_labels_are_called_the_rules(scene, tmp_path):
    """The training report says "rules" for LabelMaskExport's masks and the classifier's class map
    (recorded in dataset.json); an analyst's polygons in the same codes, a raster of codes and
    labels read through a mapping are "labels"."""
    assert rule_labels(scene["labels"]) and rule_labels(scene["classes"])
    assert not rule_labels(scene["labels"], mapping={1: 1})
    own = tmp_path / "own.geojson"  # the masks' polygons with the analyst's own attributes
    with fiona.open(scene["labels"]) as src:
        crs, feats = src.crs_wkt, [(f.geometry, f.properties["class_id"]) for f in src]
    with fiona.open(own, "w", driver="GeoJSON", crs=crs,
                    schema={"geometry": "MultiPolygon", "properties": {"class_id": "int", "note": "str"}}) as dst:
        for g, c in feats:
            dst.write({"geometry": g, "properties": {"class_id": c, "note": "field visit"}})
    assert not rule_labels(own)
    with rasterio.open(scene["classes"]) as ds:
        codes, profile = ds.read(1), ds.profile
    with rasterio.open(tmp_path / "codes.tif", "w", **{**profile, "count": 1}) as dst:
        dst.write(codes, 1)
    assert not rule_labels(tmp_path / "codes.tif")
    assert build_dataset(scene["s2"], own, tmp_path / "ds", patch_size=64, seed=0)["rule_labels"] is False
    assert load_dataset_info(tmp_path / "ds")["rule_labels"] is False


def test_the_class_map_written_by_snaps_geotiff_writer_is_the_rules(scene, tmp_path):
    """The classifier graph run in SNAP and written with SNAP's GeoTIFF writer: no GDAL band
    description, the band name and class names in SNAP's DIMAP header (tag 65000). It is the rules'
    map (it was called "labels"); the same file without the header, or with another band name, is not."""
    import tifffile

    from snap_operators.io import open_product
    from snap_operators.io.dimap import write_dimap
    from snap_operators.io.geotiff import SNAP_HEADER_TAG

    header = write_dimap(open_product(scene["classes"]), tmp_path / "classes.dim").read_text()
    with rasterio.open(scene["classes"]) as ds:
        codes, t, epsg = ds.read(1), ds.transform, ds.crs.to_epsg()
    geokeys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)
    geo = [(33550, "d", 3, (t.a, -t.e, 0.0), True), (33922, "d", 6, (0, 0, 0, t.c, t.f, 0), True),
           (34735, "H", len(geokeys), geokeys, True)]

    def snap_geotiff(name, text):
        path = tmp_path / name
        tifffile.imwrite(path, codes, byteorder=">", photometric="minisblack", metadata=None,
                         extratags=geo + ([(SNAP_HEADER_TAG, "s", 0, text, True)] if text else []))
        return path

    assert rule_labels(snap_geotiff("snap.tif", header))
    assert not rule_labels(snap_geotiff("bare.tif", None))
    assert not rule_labels(snap_geotiff("renamed.tif", header.replace("<BAND_NAME>class_id<", "<BAND_NAME>codes<")))


def test_sentinel1_bands_and_band_choice(scene, tmp_path):
    info = build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", image_s1=scene["s1"], patch_size=64,
                         bands=["B4", "B8", "Sigma0_VV_db"], indices=["NDVI"])
    assert info["bands"] == ["B4", "B8", "Sigma0_VV_db", "NDVI"]
    assert load_dataset_info(tmp_path / "ds")["image_s1"] == str(scene["s1"])


def test_assign_blocks_deals_every_split():
    codes = assign_blocks((1000, 700), 100, seed=5)
    assert codes.shape == (10, 7)
    counts = np.bincount(codes.ravel(), minlength=3)
    assert counts.tolist() == [50, 10, 10]
    assert not np.array_equal(codes, assign_blocks((1000, 700), 100, seed=6))
    with pytest.raises(DatasetError, match="at least 3"):
        assign_blocks((100, 100), 100)


def test_patch_origins_reach_the_border():
    origins = patch_origins((100, 70), 32, 32)
    assert max(r for r, _ in origins) == 100 - 32 and max(c for _, c in origins) == 70 - 32


# ---------------------------------------------------------------- bad input

def test_labels_outside_the_image(scene, tmp_path):
    with fiona.open(scene["labels"]) as src:
        schema, crs = src.schema, src.crs_wkt
        feat = next(iter(src))
    g = mapping(translate(shape(feat.geometry.__geo_interface__), xoff=1e6))
    with fiona.open(tmp_path / "far.gpkg", "w", driver="GPKG", crs=crs, schema=schema) as dst:
        dst.write({"geometry": g, "properties": dict(feat.properties)})
    with pytest.raises(DatasetError, match="labels .* lies outside the image"):
        build_dataset(scene["s2"], tmp_path / "far.gpkg", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_missing_class_attribute(scene, tmp_path):
    with pytest.raises(DatasetError, match="no attribute 'landcover'.*class_id"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", field="landcover")


def test_band_absent_from_the_image(scene, tmp_path):
    with pytest.raises(DatasetError, match="bands B99 are not in the input.*; train without them: --bands B2$"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", bands=["B2", "B99"])


def test_image_smaller_than_one_patch(scene, tmp_path):
    with pytest.raises(DatasetError, match="smaller than one patch"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", patch_size=1024)


def test_a_stride_of_zero_or_a_negative_seed_is_refused(scene, tmp_path):
    with pytest.raises(DatasetError, match=r"stride >= 1 .*\(got 32, 0, 64\)"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", patch_size=32, stride=0, block_size=64)
    assert not (tmp_path / "ds").exists()
    with pytest.raises(DatasetError, match="seed must be >= 0, got -1"):  # once NumPy's ValueError
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", seed=-1)
    assert not (tmp_path / "ds").exists()


def test_a_labelled_class_no_training_patch_holds_is_warned_of(scene, tmp_path, caplog):
    """A few water pixels in a patch otherwise unlabelled (under --min-labelled) reach no split: the
    network cannot learn water, and the training's check of vanished classes, which reads the training
    patches, cannot see it."""
    with rasterio.open(scene["classes"]) as src:
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": None}
    labels = np.zeros((profile["height"], profile["width"]), np.uint8)
    labels[:, :256] = 3
    labels[400:402, 400:402] = 1
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(labels, 1)
    with caplog.at_level("WARNING", logger="snap_pc_models.dataset"):
        info = build_dataset(scene["s2"], tmp_path / "labels.tif", tmp_path / "ds", patch_size=64, block_size=128)
    assert info["dropped"]["few_labels"] > 0 and all("1" not in s["class_pixels"] for s in info["splits"].values())
    assert ("class 1 Water (4 labelled px, 0 in validation/test patches) is in no training patch: a model trained "
            "on this dataset alone cannot learn it; try another --seed or a smaller --block-size (or a lower "
            "--min-labelled: patches too little labelled are dropped)") in caplog.text
    caplog.clear()
    labels[400:402, 400:402] = 3
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(labels, 1)
    with caplog.at_level("WARNING", logger="snap_pc_models.dataset"):
        build_dataset(scene["s2"], tmp_path / "labels.tif", tmp_path / "ds", patch_size=64, block_size=128,
                      overwrite=True)
    assert "no training patch" not in caplog.text


def test_existing_folder_is_never_replaced_by_accident(scene, tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("keep")
    with pytest.raises(DatasetError, match="exists"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds")
    with pytest.raises(DatasetError, match="not a dataset folder"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "ds", overwrite=True)
    assert (tmp_path / "ds" / "precious.txt").read_text() == "keep"


def test_cli_dataset_and_one_line_errors(scene, tmp_path, capsys):
    code = main(["dataset", "--image", str(scene["s2"]), "--labels", str(scene["labels"]), "--out",
                 str(tmp_path / "ds"), "--patch-size", "64", "--indices", "NDVI,MNDWI"])
    out = capsys.readouterr().out
    assert code == 0 and "train" in out and "NDVI, MNDWI" in out
    code = main(["dataset", "--image", str(scene["s2"]), "--labels", str(scene["labels"]), "--out",
                 str(tmp_path / "ds2"), "--field", "nope"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["dataset", "--help"])
    assert "spatial blocks" in capsys.readouterr().out


def test_a_product_without_a_default_band_is_told_which_bands_it_can_train_on(tmp_path):
    from pathlib import Path

    leipzig = Path(__file__).resolve().parents[1] / "data" / "leipzig"  # real: no B12
    with pytest.raises(DatasetError, match="bands B12 are not in the input .*--bands B2,B3,B4,B8,B11$"):
        build_dataset(leipzig / "s2_2021.tif", leipzig / "labels.tif", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_patch_and_block_sizes_fit_the_image():
    # a full tile keeps the configuration's patches in blocks of four; smaller images get 32 px
    # patches in blocks that fit five times along the short side (at least 25 blocks to deal out)
    assert split_sizes((10980, 10980)) == (64, 256) and split_sizes((1280, 5000)) == (64, 256)
    assert split_sizes((1279, 5000)) == (32, 64) and split_sizes((390, 320)) == (32, 64)
    assert split_sizes((319, 5000)) == (32, 32) and split_sizes((100, 101)) == (32, 32)
    assert split_sizes((10980, 10980), preferred_patch=256) == (256, 1024)
    # what is given is kept; the rest still fits the image
    assert split_sizes((390, 320), patch_size=64) == (64, 64) and split_sizes((5000, 5000), patch_size=48) == (48, 192)
    assert split_sizes((390, 320), block_size=128) == (64, 128) and split_sizes((390, 320), block_size=40) == (32, 40)
    assert split_sizes((390, 320), patch_size=16, block_size=48) == (16, 48)


def test_a_small_real_scene_gets_sizes_that_train_most_of_it(tmp_path, capsys):
    """Aberystwyth (320 x 390 px, tests/data): 64 px patches in 256 px blocks made four blocks, two of them
    training; the sizes chosen for it deal 35 blocks of 64 px."""
    from pathlib import Path

    image = Path(__file__).resolve().parents[1] / "data" / "aberystwyth" / "s2_20210527_sref.tif"
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml", {"input": str(image), "output": str(tmp_path / "c.tif"),
                                                                     "labels": str(tmp_path / "labels.gpkg")}),
              ExecutionContext(overwrite=True))
    code = main(["dataset", "--image", str(image), "--labels", str(tmp_path / "labels.gpkg"), "--out", str(tmp_path / "ds")])
    out = capsys.readouterr().out
    assert code == 0 and "patches 32 px in blocks of 64 px (image 320 x 390 px)" in out, out
    info = load_dataset_info(tmp_path / "ds")
    blocks = np.asarray(info["blocks"])
    assert blocks.shape == (7, 5) and 0.6 < (blocks == 0).mean() < 0.8
    n = {k: v["patches"] for k, v in info["splits"].items()}
    assert n["train"] > 2 * (n["val"] + n["test"]) and n["val"] > 0 and n["test"] > 0, n


def test_blocks_are_dealt_stratified_so_a_rare_class_is_learnt():
    """One lake in one block of 16: a plain shuffle sends it to validation or test 30 % of the time,
    and the network never learns water; the stratified deal keeps every class in every split's share."""
    from snap_pc_models.dataset import TRAIN, assign_blocks

    counts = np.zeros((4, 4, 6), np.int64)
    counts[..., 3] = 1000
    counts[2, 1, 1] = 50  # the lake
    counts[0, 3, 4] = counts[3, 0, 4] = counts[1, 1, 4] = 30  # three villages
    plain_lost = sum(assign_blocks((400, 400), 100, seed=s)[2, 1] != TRAIN for s in range(40))
    assert plain_lost >= 4  # the unstratified deal does lose it
    for seed in range(10):
        codes = assign_blocks((400, 400), 100, seed=seed, class_counts=counts)
        assert codes[2, 1] == TRAIN
        assert sorted(set(codes.ravel().tolist())) == [0, 1, 2]
        villages = [codes[0, 3], codes[3, 0], codes[1, 1]]
        assert TRAIN in villages and len(set(villages)) >= 2  # learnt and checked
    # no labels: the plain deal, unchanged
    np.testing.assert_array_equal(assign_blocks((400, 400), 100, seed=3, class_counts=np.zeros((4, 4, 6))),
                                  assign_blocks((400, 400), 100, seed=3))


def test_block_class_counts_sum_the_labelled_pixels_of_each_block():
    from snap_pc_models.dataset import block_class_counts

    labels = np.zeros((250, 130), np.uint8)
    labels[:100, :64] = 3
    labels[200:, 100:] = 1
    labels[0, 0] = 254  # masked: not a class
    labels[1, 1] = 255  # no-data

    def read(window):
        return labels[window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width]

    got = block_class_counts(read, labels.shape, 64)
    assert got.shape == (4, 3, 254)
    assert got[0, 0, 3] == 64 * 64 - 2 and got[1, 0, 3] == 36 * 64 and got[1, 1, 3] == 0
    assert got[3, 1, 1] == 50 * 28 and got[3, 2, 1] == 50 * 2 and got[3, 0, 1] == 0
    assert got.sum() == labels[(labels > 0) & (labels < 254)].size


@pytest.fixture(scope="module")
def margin_raster(scene):
    """The same graph run with outputMargin=true: class_id and margin, float32."""
    out = scene["dir"] / "classes_margin.tif"
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml",
                         {"input": str(scene["s2"]), "output": str(out), "labels": str(scene["dir"] / "labels_m.gpkg"),
                          "minArea": "0", "outputMargin": "true"}),
              ExecutionContext(overwrite=True))
    return out


def test_labels_under_the_rule_margin_are_left_out(scene, margin_raster, tmp_path):
    with rasterio.open(margin_raster) as src:
        assert list(src.descriptions) == ["class_id", "margin"]
        margin = src.read(2)
    plain = build_dataset(scene["s2"], scene["labels"], tmp_path / "a", patch_size=64, seed=0)
    sure = build_dataset(scene["s2"], scene["labels"], tmp_path / "b", patch_size=64, seed=0, margin=margin_raster,
                         min_margin=0.3)
    assert sure["margin"] == str(margin_raster) and sure["min_margin"] == 0.3 and plain["margin"] is None
    kept = sum(sum(s["class_pixels"].get(str(c), 0) for c in range(1, 6)) for s in sure["splits"].values())
    total = sum(sum(s["class_pixels"].get(str(c), 0) for c in range(1, 6)) for s in plain["splits"].values())
    assert 0.2 * total < kept < 0.95 * total
    with rasterio.open(scene["classes"]) as src:
        cls = src.read(1)
    for split in ("train", "val", "test"):
        shard = sure["splits"][split]["shards"][0]
        y = np.load(tmp_path / "b" / shard["y"])
        for k, (r, c) in enumerate(shard["origins"]):
            m = margin[r:r + 64, c:c + 64]
            assert not y[k][~(m >= 0.3)].any()  # nothing under the margin, nor where it is NaN
            expected = np.where((m >= 0.3) & (cls[r:r + 64, c:c + 64] != 255), cls[r:r + 64, c:c + 64], 0)
            assert (y[k] == expected).mean() > 0.999  # the rest as the rules labelled it


def test_margin_raster_must_be_on_the_image_grid(scene, margin_raster, tmp_path):
    with rasterio.open(margin_raster) as src:
        prof, data = src.profile, src.read(window=((0, 500), (0, 500)))
    prof.update(width=500, height=500)
    with rasterio.open(tmp_path / "small.tif", "w", **prof) as dst:
        dst.write(data)
        dst.descriptions = ("class_id", "margin")
    with pytest.raises(DatasetError, match="not on the image's grid"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "x", patch_size=64, margin=tmp_path / "small.tif")
    with pytest.raises(DatasetError, match="none named 'margin'"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "y", patch_size=64, margin=scene["s2"])
    with pytest.raises(DatasetError, match="cannot read the margin raster"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "z", patch_size=64, margin=tmp_path / "absent.tif")
    with pytest.raises(DatasetError, match="min margin"):
        build_dataset(scene["s2"], scene["labels"], tmp_path / "w", patch_size=64, margin=margin_raster,
                      min_margin=-1)
    assert not any((tmp_path / n).exists() for n in "xyzw")


def test_cli_dataset_margin(scene, margin_raster, tmp_path, capsys):
    code = main(["dataset", "--image", str(scene["s2"]), "--labels", str(scene["labels"]), "--out",
                 str(tmp_path / "ds"), "--patch-size", "64", "--margin", str(margin_raster), "--min-margin", "0.5"])
    assert code == 0, capsys.readouterr().err
    assert load_dataset_info(tmp_path / "ds")["min_margin"] == 0.5


ABERYSTWYTH = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "aberystwyth"


def _labels_of(folder):
    info = load_dataset_info(folder)
    return info, np.concatenate([np.concatenate(open_split(folder, info, s)[1]).ravel() for s in ("train", "val", "test")])


def test_labels_of_another_legend_train_through_a_label_mapping(tmp_path, capsys):
    """Hand-drawn polygons with class names (the real Aberystwyth ones), and a raster in a land-cover product's
    codes (ESA WorldCover's 80 water, 10 trees, 50 built-up, made from the same polygons): refused without a
    mapping, one line, nothing written; through --label-mapping both give the same patches as the polygons'
    codes mapped to our class ids, the classes not mapped (grass) left unlabelled."""
    image, polygons = ABERYSTWYTH / "s2_20210527_sref.tif", ABERYSTWYTH / "class_polygons.geojson"
    with rasterio.open(ABERYSTWYTH / "labels.tif") as src:  # 1 water, 2 forest, 3 grass, 4 urban
        codes, profile = src.read(1), src.profile
    worldcover = tmp_path / "worldcover.tif"
    with rasterio.open(worldcover, "w", **{**profile, "dtype": "uint8", "nodata": 0}) as dst:
        dst.write(np.select([codes == 1, codes == 2, codes == 3, codes == 4], [80, 10, 30, 50], 0).astype("uint8"), 1)
    base = ["dataset", "--image", str(image), "--min-labelled", "0.001"]
    assert main([*base, "--labels", str(worldcover), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: labels ") and len(err.strip().splitlines()) == 1
    assert "hold codes 10, 30, 50, 80, which are not the network's classes (1 Water, 2 Bare Soil" in err
    assert "map them with --label-mapping CODE:ID pairs (e.g. 10:ID,...;" in err
    assert main([*base, "--labels", str(polygons), "--field", "class", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "class holds class names, not codes (forest, grass, urban, water): map them to class ids with " \
        "--label-mapping NAME:ID pairs" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    assert main([*base, "--labels", str(worldcover), "--out", str(tmp_path / "wc"),
                 "--label-mapping", "80:1,10:3,50:4"]) == 0
    assert main([*base, "--labels", str(polygons), "--field", "class", "--out", str(tmp_path / "names"),
                 "--label-mapping", "Water:1, forest:3,urban:4"]) == 0
    assert main([*base, "--labels", str(polygons), "--field", "class_code", "--out", str(tmp_path / "codes"),
                 "--label-mapping", "1:1,2:3,4:4"]) == 0
    info, wc = _labels_of(tmp_path / "wc")
    assert info["label_mapping"] == [[80, 1], [10, 3], [50, 4]]
    assert load_dataset_info(tmp_path / "names")["label_mapping"] == [["Water", 1], ["forest", 3], ["urban", 4]]
    np.testing.assert_array_equal(_labels_of(tmp_path / "names")[1], wc)
    np.testing.assert_array_equal(_labels_of(tmp_path / "codes")[1], wc)
    assert set(np.unique(wc)) == {0, 1, 3, 4}
    # every labelled pixel of the patches is a polygon pixel of its class, grass never
    counts = sum(np.bincount(y.ravel(), minlength=6) for s in ("train", "val", "test")
                 for y in open_split(tmp_path / "wc", info, s)[1])
    assert 0 < counts[3] <= (codes == 2).sum() and 0 < counts[4] <= (codes == 4).sum() and counts[2] == counts[5] == 0


def test_a_label_mapping_to_a_class_the_network_lacks_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"^--label-mapping maps labels to class\(es\) 7, which the network does "
                                           r"not have \(its classes: 1 Water"):
        build_dataset(ABERYSTWYTH / "s2_20210527_sref.tif", ABERYSTWYTH / "labels.tif", tmp_path / "ds",
                      mapping={1: 1, 2: 7})
    assert not (tmp_path / "ds").exists()


def test_codes_over_255_are_refused_not_wrapped(tmp_path):
    """A CORINE-coded raster (311 broad-leaved forest, 512 water bodies) would have been cut to uint8 in the
    shards: 311 became 55, 512 became 0; it is refused, and reads through a mapping."""
    with rasterio.open(ABERYSTWYTH / "labels.tif") as src:
        codes, profile = src.read(1), src.profile
    corine = tmp_path / "corine.tif"
    with rasterio.open(corine, "w", **{**profile, "dtype": "uint16", "nodata": 0}) as dst:
        dst.write(np.select([codes == 1, codes == 2], [512, 311], 0).astype("uint16"), 1)
    with pytest.raises(DatasetError, match="hold codes 311, 512, which are not the network's classes"):
        build_dataset(ABERYSTWYTH / "s2_20210527_sref.tif", corine, tmp_path / "ds", min_labelled=0.001)
    info = build_dataset(ABERYSTWYTH / "s2_20210527_sref.tif", corine, tmp_path / "ds", min_labelled=0.001,
                         mapping={512: 1, 311: 3})
    pixels = {k for s in info["splits"].values() for k in s["class_pixels"]}
    assert pixels == {"0", "1", "3"}


def test_a_linear_sentinel1_product_is_told_to_convert_and_then_trains(shared_data, tmp_path, capsys, linear_copy):
    """ASF's terrain-corrected GeoTIFFs are linear (Sigma0_VV): the S1+S2 dataset, whose channels are the dB bands,
    once said "train without them". Now it says to convert them; converted with LinearToFromdB, the channels are
    the real BigEarthNet patch's dB values."""
    s2 = shared_data("bigearthnet", "BigEarthNet-S2-Example", "S2A_MSIL2A_20170613T101031_87_48")
    s1 = shared_data("bigearthnet", "BigEarthNet-S1-Example", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48")
    linear = linear_copy(s1)
    with rasterio.open(next(s2.glob("*_B02.tif"))) as src:
        profile = {**src.profile, "dtype": "uint8", "nodata": 0}
        labels = np.full((src.height, src.width), 3, np.uint8)
    labels[:, :40] = 1
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(labels, 1)
    with pytest.raises(DatasetError, match=r"the product holds Sigma0_VV, Sigma0_VH in linear units: convert to dB "
                                           r"first with LinearToFromdB .*\(snap-pc LinearToFromdB -t S1_db.tif S1\)$"):
        build_dataset(s2, tmp_path / "labels.tif", tmp_path / "ds", image_s1=linear)
    assert main(["LinearToFromdB", "-t", str(tmp_path / "s1_db.tif"), str(linear)]) == 0
    capsys.readouterr()
    info = build_dataset(s2, tmp_path / "labels.tif", tmp_path / "ds", image_s1=tmp_path / "s1_db.tif",
                         indices=[], patch_size=16, block_size=16)
    assert info["bands"][-2:] == ["Sigma0_VV_db", "Sigma0_VH_db"]
    direct = build_dataset(s2, tmp_path / "labels.tif", tmp_path / "ds_db", image_s1=s1, indices=[], patch_size=16,
                           block_size=16)
    assert direct["splits"]["train"]["patches"] == info["splits"]["train"]["patches"] > 0
    for split in ("train", "val", "test"):
        x = np.concatenate(open_split(tmp_path / "ds", info, split)[0])
        np.testing.assert_allclose(x, np.concatenate(open_split(tmp_path / "ds_db", direct, split)[0]), atol=1e-4)


def test_survey_points_are_told_of_min_labelled_and_train_with_it(tmp_path):
    """The real Leipzig survey points (77 mapped of 97, by name) label a few pixels per patch: the default 5 %
    drops every patch, and the error now names the option that keeps them."""
    leipzig = ABERYSTWYTH.parent / "leipzig"
    common = dict(bands=["B2", "B3", "B4", "B8", "B11"], field="land_cover",
                  mapping={"water": 1, "forest": 3, "urban": 4})
    with pytest.raises(DatasetError, match=r"29 with < 5% labelled pixels\).* or a lower --min-labelled \(0 keeps "
                                           r"every patch with a label"):
        build_dataset(leipzig / "s2_2021.tif", leipzig / "points.gpkg", tmp_path / "ds", **common)
    info = build_dataset(leipzig / "s2_2021.tif", leipzig / "points.gpkg", tmp_path / "ds", min_labelled=0, **common)
    labelled = {k: sum(s["class_pixels"].get(k, 0) for s in info["splits"].values()) for k in ("1", "3", "4")}
    assert all(labelled.values()) and sum(labelled.values()) > 77 // 2, labelled  # overlapping edge patches count twice


@pytest.mark.real_data
def test_labels_of_a_cloud_covered_date_are_refused_as_empty(shared_data, tmp_path):
    """Real: Slovenia's cloudy 2015-08-20 through the shipped S2 graph masks every pixel, so its label masks
    hold the cloud's mask (254) alone. Training on them said 'no usable patch ... check that the labels cover
    the image' (they do); it now says that nothing is labelled and why, before anything is written."""
    image = shared_data("eolearn_slovenia", "S2L1C_2015-08-20.tif")
    run_graph(load_graph(GRAPHS / "progressive_classifier_s2.xml",
                         {"input": str(image), "output": str(tmp_path / "classes.tif"),
                          "labels": str(tmp_path / "labels.gpkg")}), ExecutionContext())
    with fiona.open(tmp_path / "labels.gpkg") as src:
        assert {f["properties"]["class_id"] for f in src} == {254}  # the cloud's mask only
    with pytest.raises(DatasetError, match=r"labels .*labels.gpkg give no pixel of .*S2L1C_2015-08-20.tif a class "
                                           r"\(1 Water, .*\): nothing to learn \(the masks of a class map masked"):
        build_dataset(image, tmp_path / "labels.gpkg", tmp_path / "ds", bands=["B2", "B3", "B4", "B8", "B11"])
    assert not (tmp_path / "ds").exists()
    # the class raster of the same map (254 everywhere) through a mapping of its trees: the same, naming it
    with pytest.raises(DatasetError, match=r"nothing to learn .*--label-mapping maps none"):
        build_dataset(image, tmp_path / "classes.tif", tmp_path / "ds", bands=["B2", "B3", "B4", "B8", "B11"],
                      mapping={3: 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif", "classes.tif.aux.xml", "labels.gpkg",
                                                          "labels.qml", "labels_areas.csv"]
