"""One way to write a whole file: a staged name (core.staging.staged_path), then a rename.

Reports, tables, figures, QGIS styles, SNAP descriptors and module files all
go through core.outputs (stage_bytes/stage_text/stage_figure in
staged_outputs; write_bytes/write_text/save_figure). There once were other
temporary-name schemes (``tempfile.mkstemp`` in the descriptor generator and
the .nbm builder) and figures saved straight onto their final path.
"""

from __future__ import annotations

import ast
import csv
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from snap_operators.core import staging
from snap_operators.core.errors import ProductWriteError
from snap_operators.core.outputs import stage_bytes, staged_outputs, write_bytes, write_text
from snap_operators.snap import descriptors, install

PACKAGE = Path(staging.__file__).resolve().parents[1]


@pytest.fixture
def renames(monkeypatch):
    """Every ``os.replace(src, dst)`` of the test, as (src name, dst path)."""
    seen: list[tuple[str, Path]] = []
    real = os.replace

    def spy(src, dst, *args, **kwargs):
        seen.append((Path(src).name, Path(dst)))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    return seen


def assert_staged(renames, folder: Path, expected: set[str]) -> None:
    """The files below `folder` are `expected` (relative paths), each renamed into place from a staged
    name of this process, and nothing is left beside them."""
    published = {dst.relative_to(folder).as_posix(): src for src, dst in renames if dst.is_relative_to(folder)}
    assert set(published) == expected
    for name, src in published.items():
        assert staging.staged_owner(src) == (staging.HOST, os.getpid()), (name, src)
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == expected


# --- the helpers ---------------------------------------------------------------------------


def test_write_bytes_and_text_publish_through_a_staged_name(tmp_path, renames):
    write_bytes(tmp_path / "a.bin", b"\x00\x01")
    write_text(tmp_path / "b.txt", "é\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" and (tmp_path / "b.txt").read_bytes() == "é\n".encode()
    assert_staged(renames, tmp_path, {"a.bin", "b.txt"})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~umask  # as a plain open() gives


def test_a_failed_file_leaves_none_of_the_set(tmp_path):
    (tmp_path / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_outputs([tmp_path / "new.txt", tmp_path / "old.txt"]) as staged:
            stage_bytes(staged, tmp_path / "new.txt", b"1")
            raise RuntimeError("the figure failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"] and (tmp_path / "old.txt").read_text() == "kept"
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ProductWriteError, match="is a FIFO"):
        write_text(tmp_path / "pipe", "x")


# --- its users -----------------------------------------------------------------------------


def test_snap_descriptors_are_staged_and_published_together(tmp_path, renames):
    written = descriptors.generate(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(descriptors.render())
    assert_staged(renames, tmp_path, set(descriptors.render()))


def test_nbm_is_staged(tmp_path, renames):
    out = install.build_nbm(tmp_path / "snap_pc.nbm", "1.2.3")
    assert zipfile.ZipFile(out).testzip() is None
    assert_staged(renames, tmp_path, {"snap_pc.nbm"})


def test_timeseries_tables_and_figures_are_staged(tmp_path, renames):
    from snap_operators.apps.timeseries import run_timeseries

    maps = []
    for day in range(4):
        a = np.full((40, 40), 3, np.uint8)
        a[: 5 + 4 * day] = 1
        path = tmp_path / f"map_2020-01-0{day + 1}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8", nodata=255,
                           crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
            dst.write(a, 1)
        maps.append(path)
    out = tmp_path / "series"
    series = run_timeseries(maps, out)
    names = {Path(p).name for p in series.outputs}
    assert {"areas_trends.png", "correlation.png", "stacked_areas.png"} <= names
    for png in ("areas_trends.png", "correlation.png", "stacked_areas.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_staged(renames, out, names)


def test_label_mask_style_and_area_table_are_staged(tmp_path, renames):
    import dask.array as da
    from rasterio.crs import CRS

    from snap_operators.core.product import Band, Product
    from snap_operators.ops.label_mask_export import LabelMaskExport

    a = np.ones((20, 20), np.uint8)
    a[:, 10:] = 2
    band = Band("class_id", da.from_array(a, chunks=8), Affine(10, 0, 0, 0, -10, 0), no_data=255)
    op = LabelMaskExport.create({"sourceProduct": Product("p", "C", {"class_id": band}, crs=CRS.from_epsg(32633))},
                                {"file": str(tmp_path / "m.gpkg")})
    op.execute()
    assert_staged(renames, tmp_path, {"m.gpkg", "m.qml", "m_areas.csv"})
    with open(tmp_path / "m_areas.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["class_id"], r["regions"], r["vector_area_m2"]) for r in rows if r["regions"] != "0"] == \
        [("1", "1", "20000.0"), ("2", "1", "20000.0")]


# --- nothing else ------------------------------------------------------------------------------


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


#: Modules that rename staged files or folders themselves: the staging module, BEAM-DIMAP's
#: header-and-folder swap and snap install's folder swap (both of staged_path names).
RENAMERS = {"core/staging.py", "io/dimap.py", "snap/install.py"}


def test_no_other_temporary_name_scheme_in_the_package():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if "plugin" in rel:
            continue
        calls = set(_calls(ast.parse(path.read_text(encoding="utf-8"))))
        assert not calls & {"mkstemp", "NamedTemporaryFile", "mktemp"}, rel
        if "savefig" in calls:
            assert rel == "core/outputs.py", f"{rel} saves a figure itself; use stage_figure/save_figure"
        if {"replace", "rename"} & calls and rel not in RENAMERS:
            source = path.read_text(encoding="utf-8")
            assert "os.replace(" not in source and "os.rename(" not in source and ".rename(" not in source, rel
