"""One vector-to-raster reader (io.reference.read_vector_labels) for training samples and references.

The ProgressiveClassifier's samples (science.rules.read_samples) and assess'
(and dataset's) reference (io.reference.reference_reader) once rasterized
vectors each their own way: references truncated a class code of 2.7 to 2,
took a file without CRS to be in the image's CRS and skipped features
without a code, where samples refused all three. Both now read alike.
"""

from __future__ import annotations

import fiona
import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from snap_operators.io.reference import ReferenceDataError, parse_mapping, read_vector_labels, reference_reader
from snap_operators.science.rules import RulesError, read_samples

UTM = CRS.from_epsg(32638)
T = Affine(10.0, 0.0, 399960.0, 0.0, -10.0, 4000020.0)
H, W = 60, 50
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def ring(col0, row0, col1, row1):
    """A lon/lat ring around pixel corners (col0, row0)..(col1, row1) of the grid."""
    corners = [T @ (col0, row0), T @ (col1, row0), T @ (col1, row1), T @ (col0, row1), T @ (col0, row0)]
    return [TO_LL.transform(x, y) for x, y in corners]


def write_labels(path, features, crs="EPSG:4326", driver="GPKG", kind="int"):
    """A vector file with attribute `label` of `kind` ("int", "float", "str"; None stays null)."""
    schema = {"geometry": "Unknown", "properties": {"label": kind}}
    cast = {"int": int, "float": float, "str": str}[kind]
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as dst:
        for geometry, label in features:
            dst.write({"geometry": geometry, "properties": {"label": None if label is None else cast(label)}})
    return path


def polygon(*box):
    return {"type": "Polygon", "coordinates": [ring(*box)]}


def point(col, row):
    return {"type": "Point", "coordinates": TO_LL.transform(*(T @ (col + 0.5, row + 0.5)))}


def samples_array(path, class_ids=(1, 2, 3), chunks=16):
    rows = tuple(min(chunks, H - y) for y in range(0, H, chunks))
    cols = tuple(min(chunks, W - x) for x in range(0, W, chunks))
    s = read_samples(path, "label", UTM, T, (rows, cols), list(class_ids))
    out = np.zeros((H, W), np.int64)
    for (i, j), block in s.blocks.items():
        y, x = sum(rows[:i]), sum(cols[:j])
        out[y:y + block.shape[0], x:x + block.shape[1]] = block
    return out, s.counts


def reference_array(path):
    return reference_reader(path, UTM, T, W, H, "label")(Window(0, 0, W, H))


def test_samples_and_reference_rasterize_alike(tmp_path):
    path = write_labels(tmp_path / "labels.gpkg", [
        (polygon(5, 5, 30, 20), 3.0),
        (polygon(20, 15, 45, 40), 1),  # overlaps the first: the later feature wins
        (point(10, 50), 2),
        (point(48, 58), 2),
        (polygon(5, 30, 12, 40), None),  # no code: says nothing
        (None, 1),  # no geometry
    ], kind="float")  # 3.0 is class 3
    samples, counts = samples_array(path)
    reference = reference_array(path)
    np.testing.assert_array_equal(samples, reference)
    assert reference[10, 10] == 3 and reference[18, 25] == 1 and reference[50, 10] == 2 and reference[58, 48] == 2
    assert reference[35, 8] == 0
    assert counts == {c: int((reference == c).sum()) for c in (1, 2, 3)}


@pytest.mark.parametrize("label, kind", [(2.7, "float"), ("2.5", "str")])
def test_a_code_that_is_no_integer_is_refused_by_both(tmp_path, label, kind):
    path = write_labels(tmp_path / "bad.gpkg", [(polygon(5, 5, 30, 20), 1), (polygon(0, 0, 4, 4), label)], kind=kind)
    with pytest.raises(ReferenceDataError, match=r"^reference .*bad\.gpkg: label = .* is not a class code$"):
        reference_array(path)
    with pytest.raises(RulesError, match=r"^samplesFile .*bad\.gpkg: label = .* is not a class code$"):
        samples_array(path)


def test_a_file_without_crs_is_refused_by_both(tmp_path):
    # In the image's own coordinates, but without a .prj nothing says so: the reference took it on trust.
    x, y = T @ (5, 5)
    square = {"type": "Polygon", "coordinates": [[(x, y), (x + 100, y), (x + 100, y - 100), (x, y - 100), (x, y)]]}
    path = write_labels(tmp_path / "nocrs.shp", [(square, 1)], crs=None, driver="ESRI Shapefile")
    with pytest.raises(ReferenceDataError, match="has no CRS"):
        reference_array(path)
    with pytest.raises(RulesError, match="has no CRS"):
        samples_array(path)


def test_messages_name_the_file_and_the_option(tmp_path):
    path = write_labels(tmp_path / "l.gpkg", [(polygon(5, 5, 30, 20), 1)])
    with pytest.raises(ReferenceDataError, match=r"reference .*l\.gpkg: no attribute 'class_id' \(--field\); "
                                                 r"attributes: label$"):
        read_vector_labels(path, "class_id", UTM)
    with pytest.raises(RulesError, match=r"samplesFile .*l\.gpkg: no attribute 'class_id' \(samplesClassField\)"):
        read_samples(path, "class_id", UTM, T, ((H,), (W,)), [1])
    with pytest.raises(RulesError, match=r"label = 1 is not a class of the rule set \(2, 3\)"):
        samples_array(path, class_ids=(2, 3))
    empty = write_labels(tmp_path / "empty.gpkg", [(polygon(5, 5, 30, 20), None)])
    with pytest.raises(ReferenceDataError, match="no shape has a 'label' value"):
        read_vector_labels(empty, "label", UTM)


def test_text_codes_are_integers_too(tmp_path):
    path = write_labels(tmp_path / "t.gpkg", [(polygon(5, 5, 30, 20), " 3"), (point(10, 50), "2")], kind="str")
    assert read_vector_labels(path, "label", UTM).codes.tolist() == [3, 2]


def test_class_names_are_read_through_a_mapping(tmp_path, caplog):
    """An attribute of class names (the usual hand-drawn reference): refused without a mapping, with the names
    found and the class ids; read through one, case and outer spaces aside; names it does not map left out."""
    path = write_labels(tmp_path / "names.gpkg", [(polygon(5, 5, 30, 20), "Forest"), (polygon(20, 15, 45, 40), "water "),
                                                  (point(10, 50), "grass")], kind="str")
    with pytest.raises(ReferenceDataError) as exc:
        reference_array(path)
    msg = str(exc.value)
    assert msg.startswith("reference ") and "label holds class names, not codes (Forest, grass, water ): map them " \
        "to class ids with --mapping NAME:ID pairs (Forest:ID,...; ids: 1 Water, 2 Bare Soil, 3 Trees" in msg
    with pytest.raises(RulesError, match=r"label holds class names, not codes .*: map them to class ids with "
                                         r"samplesMapping NAME:ID pairs"):
        samples_array(path)
    codes = write_labels(tmp_path / "codes.gpkg", [(polygon(5, 5, 30, 20), 3), (polygon(20, 15, 45, 40), 1)])
    with caplog.at_level("WARNING"):
        named = reference_reader(path, UTM, T, W, H, "label", mapping={"forest": 3, "WATER": 1})(Window(0, 0, W, H))
    assert named.min() == -1  # with a mapping, what it does not map (nothing included) reads -1: left out
    named = np.maximum(named, 0)
    np.testing.assert_array_equal(named, reference_array(codes))
    assert "1 shapes of grass, not in the mapping, are left out" in caplog.text
    raster = tmp_path / "r.tif"
    import rasterio

    with rasterio.open(raster, "w", driver="GTiff", width=W, height=H, count=1, dtype="uint8", crs=UTM, transform=T) as d:
        d.write(named.astype("uint8"), 1)
    with pytest.raises(ReferenceDataError, match="is a raster of class codes: map codes, not names"):
        reference_reader(raster, UTM, T, W, H, mapping={"forest": 3})
    with pytest.raises(ReferenceDataError, match=r"none of its label values \(Forest, grass, water \) is in the "
                                                 r"mapping \(lake\)$"):
        read_vector_labels(path, "label", UTM, names={"lake": 1})


def test_parse_mapping():
    assert parse_mapping("5:1, 2:3") == {5: 1, 2: 3}
    assert parse_mapping("water:1, bare soil : 2,Forest:3") == {"water": 1, "bare soil": 2, "Forest": 3}
    with pytest.raises(ReferenceDataError, match="^--mapping: cannot read '5-1'; expected CODE:CLASS"):
        parse_mapping("5-1")
    with pytest.raises(ReferenceDataError, match="^--label-mapping: cannot read 'water:one'; expected CODE:CLASS"):
        parse_mapping("water:one", "--label-mapping")
    with pytest.raises(ReferenceDataError, match="^--mapping mixes codes and class names"):
        parse_mapping("5:1,water:1")


def test_a_reference_code_may_map_to_a_group_of_classes():
    """A water / not-water reference (Sen1Floods11's labels): its 0 is right as any land class, written
    with +; only a reference's mapping groups, and a class is in one group only."""
    from snap_operators.io.reference import class_groups

    assert parse_mapping("1:1, 0:5+2+3+4", groups=True) == {1: 1, 0: (2, 3, 4, 5)}
    assert parse_mapping("land:0+2+3, water:1", groups=True) == {"land": (0, 2, 3), "water": 1}
    with pytest.raises(ReferenceDataError, match=r"--label-mapping: cannot read '0:2\+3'; expected CODE:CLASS pairs"):
        parse_mapping("1:1,0:2+3", "--label-mapping")
    with pytest.raises(ReferenceDataError, match=r"any of several classes may map, with \+: 0:2\+3\+4\+5"):
        parse_mapping("0:2+", groups=True)
    # the group reads as its smallest class but Unclassified, which a group may hold
    assert class_groups({1: 1, 0: (0, 3, 2)}) == ({1: 1, 0: 2}, {2: (0, 3, 2)})
    assert class_groups({10: 1, 11: 1, 0: (2, 3), 9: (2, 3)}) == ({10: 1, 11: 1, 0: 2, 9: 2}, {2: (2, 3)})
    for mapping, message in (({1: 1, 0: (1, 2)}, r"class 1 is in 1 and in 1\+2"),
                             ({0: (2, 3), 9: (3, 4)}, r"class 3 is in 2\+3 and in 3\+4"),
                             ({0: (2, 254)}, r"class id 254 \(of 0\) is not a class of a map \(0-253\)")):
        with pytest.raises(ReferenceDataError, match=message):
            class_groups(mapping)


def test_a_code_mapping_reads_class_ids_and_leaves_the_rest_out(tmp_path):
    """A raster of another legend's codes (a land-cover product's, as training labels or reference) read through a
    code mapping: mapped codes give their class ids, every other code (and 0, unless mapped) -1."""
    import rasterio

    codes = np.zeros((H, W), dtype="uint8")
    codes[:10], codes[10:20], codes[20:30] = 80, 10, 50
    raster = tmp_path / "worldcover.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=W, height=H, count=1, dtype="uint8", crs=UTM, transform=T) as d:
        d.write(codes, 1)
    read = reference_reader(raster, UTM, T, W, H, mapping={80: 1, 10: 3})(Window(0, 0, W, H))
    expected = np.select([codes == 80, codes == 10], [1, 3], -1)
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_array_equal(reference_reader(raster, UTM, T, W, H)(Window(0, 0, W, H)), codes)


def test_a_float_raster_of_codes_reads_its_nan_as_nothing_and_refuses_fractions(tmp_path):
    """A float32 class raster (a class map written beside its margin; an export from R or QGIS) reads as codes,
    its undeclared NaN as 0 (it once became -9223372036854775808); values that are no whole numbers are refused,
    as a vector code of 2.5 is, rather than cut to 2."""
    import rasterio

    a = np.full((H, W), 3.0, np.float32)
    a[:10] = np.nan
    path = tmp_path / "float.tif"
    profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="float32", crs=UTM, transform=T)
    with rasterio.open(path, "w", **profile) as d:
        d.write(a, 1)
    read = reference_reader(path, UTM, T, W, H)(Window(0, 0, W, H))
    assert read.dtype == np.int64 and (read[:10] == 0).all() and (read[10:] == 3).all()
    a[20, 5] = 2.5
    with rasterio.open(tmp_path / "fraction.tif", "w", **profile) as d:
        d.write(a, 1)
    with pytest.raises(ReferenceDataError, match=r"reference raster .*fraction.tif holds values that are not whole "
                                                 r"numbers \(e.g. 2.5\): it is no raster of class codes$"):
        reference_reader(tmp_path / "fraction.tif", UTM, T, W, H)(Window(0, 0, W, H))


def test_each_pixel_belongs_to_its_sampling_unit(tmp_path):
    """`with_units`: a polygon is one unit wherever windows cut it, a point is one, and a raster's
    unit is a connected region of one class, numbered so that no two windows' regions share an id."""
    import rasterio

    path = write_labels(tmp_path / "units.gpkg", [(polygon(5, 5, 30, 40), 3), (polygon(35, 5, 45, 15), 3),
                                                  (point(2, 50), 1), (point(40, 50), 1)])
    read = reference_reader(path, UTM, T, W, H, "label")
    assert read.unit_kind == "shapes"
    top, bottom = (read.with_units(Window(0, r, W, h)) for r, h in ((0, 20), (20, H - 20)))
    codes, units = (np.vstack(pair) for pair in zip(top, bottom))
    assert np.array_equal(codes, reference_array(path))
    # file order plus one; the first polygon keeps its id across the windows' edge at row 20
    assert set(np.unique(top[1][top[1] > 0])) == {1, 2} and set(np.unique(bottom[1][bottom[1] > 0])) == {1, 3, 4}
    assert (units[5:40, 5:30] == 1).all() and units[50, 2] == 3 and units[50, 40] == 4
    assert reference_reader(write_labels(tmp_path / "p.gpkg", [(point(2, 50), 1)]), UTM, T, W, H,
                            "label").unit_kind == "points"
    # the same as a raster: the two polygons of class 3 are two regions; the one cut at row 20 is two
    profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="uint8", crs=UTM, transform=T)
    with rasterio.open(tmp_path / "units.tif", "w", **profile) as d:
        d.write(codes.astype(np.uint8), 1)
    read = reference_reader(tmp_path / "units.tif", UTM, T, W, H, mapping={3: 3, 1: 1})
    assert read.unit_kind == "regions"
    (_, top), (_, bottom) = (read.with_units(Window(0, r, W, h)) for r, h in ((0, 20), (20, H - 20)))
    assert len(np.unique(top[top > 0])) == 2 and len(np.unique(bottom[bottom > 0])) == 3
    assert not set(np.unique(top[top > 0])) & set(np.unique(bottom[bottom > 0]))
    assert top[5, 5] == 5 * W + 5 + 1 and bottom[0, 5] == 20 * W + 5 + 1  # each region: its first pixel + 1


def test_a_rasters_regions_do_not_depend_on_the_windows_read(tmp_path):
    """A U-shaped region and a stripe, read in windows of 1, 3 and 60 rows top to bottom: once joined
    (`unit`), every pixel has the same unit id whatever the windows, the id of the region's first pixel."""
    import rasterio

    a = np.zeros((H, W), np.uint8)
    a[10:40, 5:8] = a[10:40, 20:23] = a[37:40, 5:23] = 2  # a U: its arms meet only at the bottom
    a[:, 30] = 1  # a stripe through every window
    profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="uint8", crs=UTM, transform=T)
    with rasterio.open(tmp_path / "u.tif", "w", **profile) as d:
        d.write(a, 1)
    seen = []
    for rows in (1, 3, H):
        read = reference_reader(tmp_path / "u.tif", UTM, T, W, H)
        units = np.vstack([read.with_units(Window(0, r, W, min(rows, H - r)))[1] for r in range(0, H, rows)])
        seen.append(np.vectorize(read.unit)(units))
    assert all(np.array_equal(seen[0], other) for other in seen[1:])
    assert set(np.unique(seen[0])) == {0, 30 + 1, 10 * W + 5 + 1}
