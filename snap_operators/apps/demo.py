"""``make demo``: the project's main job on a synthetic scene.

Writes a synthetic Sentinel-2/Sentinel-1 scene with known truth, with haze
patches and mixed pixels at class borders (what the rules cannot classify),
runs the project's graphs on it with the standalone engine, trains the
Attention U-Net on the rules' label masks and shows what the network changes
against the truth, and prints where the outputs are. Run ``python -m snap_operators.apps.demo --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..core.context import ExecutionContext
from ..core.errors import SnapPcError
from ..engine.runner import load_graph, run_graph

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "graphs"


def run(graph: str, variables: dict[str, str], progress: bool) -> list[str]:
    """Run one graph of ``graphs/`` and return the paths it wrote."""
    t0 = time.perf_counter()
    result = run_graph(load_graph(GRAPHS / graph, variables), ExecutionContext(overwrite=True, progress=progress))
    print(f"  {graph}: {time.perf_counter() - t0:.1f} s -> {', '.join(map(str, result.outputs))}")
    return result.outputs


def read_area_csv(path: Path) -> list[dict]:
    """Rows of an area-table CSV (the Total row left out)."""
    import csv

    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if (r.get("class_id") or "").strip().isdigit()]


def train_unet(out: Path, scene: dict, epochs: int, step: int) -> Path | None:
    """Train the small Attention U-Net on the S2 graph's label masks and export it to ONNX.

    Through the ``snap-pc train`` command (the training package is reached
    only through the command registry); None when it cannot train here
    (e.g. TensorFlow missing), said on one line.
    """
    import json

    from .cli import main

    if epochs <= 0:
        return None
    print(f"{step}. Attention U-Net (small) trained on labels_s2.gpkg, {epochs} epochs, exported to ONNX")
    t0 = time.perf_counter()
    model = out / "unet_small.onnx"
    rc = main(["train", "--image", str(scene["s2"]), "--labels", str(out / "labels_s2.gpkg"), "--out", str(model),
               "--config", "small", "--epochs", str(epochs), "--seed", "0", "--overwrite"])
    if rc != 0:
        print("   skipped: training did not run (see the message above)")
        return None
    m = json.loads(model.with_suffix(".metrics.json").read_text())
    print(f"   {time.perf_counter() - t0:.1f} s, best epoch {m['best_epoch']}; held-out test blocks: OA "
          f"{m['test']['overall_accuracy']:.3f}, mean IoU {m['test']['mean_iou']:.3f} (majority class: "
          f"{m['test']['baseline_majority']['mean_iou']:.3f})")
    return model


def unet_inference(out: Path, scene: dict, model: Path, progress: bool, step: int) -> None:
    """Run graphs/unet_inference.xml with the demo's model; print agreement with the rules and the truth."""
    import rasterio

    from .assess import assess

    print(f"{step}. unet_inference.xml with {model.name} (standalone Dask engine, ONNX Runtime)")
    classes = out / "classes_unet.tif"
    run("unet_inference.xml", {"input": str(scene["s2"]), "model": str(model), "output": str(classes),
                               "labels": str(out / "labels_unet.gpkg")}, progress)
    with rasterio.open(classes) as a, rasterio.open(out / "classes_s2.tif") as b, \
            rasterio.open(scene["truth"]) as c:
        unet, rules, truth = a.read(1), b.read(1), c.read(1)
    changes = what_the_unet_changed(rules, unet, truth)
    metrics = assess(classes, scene["truth"]).metrics
    print(f"   agreement with the rule-based map: {changes['agreement']:.2%} of {changes['both']} px classified by both")
    # The shipped rules end with a catch-all stage, so they seldom leave a pixel unclassified: say it only then
    filled = f"; {changes['filled']} px the rules left unclassified were filled" if changes["filled"] else ""
    print(f"   the network changed {changes['changed']} px of the rules' map (haze, mixed pixels at class borders): "
          f"{changes['corrected']} to the true class, {changes['broken']} away from it (the rest wrong in both)"
          f"{filled}")
    print(f"   against the synthetic truth: overall accuracy {metrics['overall_accuracy']:.4f} (the rules: "
          f"{changes['rules_accuracy']:.4f}), kappa {metrics['kappa']:.4f}")


def what_the_unet_changed(rules: np.ndarray, unet: np.ndarray, truth: np.ndarray) -> dict:
    """Where the network's map departs from the rules' map, scored against the truth.

    Parameters
    ----------
    rules, unet, truth : numpy.ndarray
        Class maps of one grid, ``(rows, cols)``: 0 unclassified, 1-5 classes, 254 masked, 255 no-data.

    Returns
    -------
    dict
        ``both`` px classified in both maps and their ``agreement`` (fraction);
        ``changed`` px of those the network classed otherwise, ``corrected``
        of them to the true class (the rules were wrong), ``broken`` away from
        it (the rules were right); ``filled`` px the rules left unclassified
        (0) that the network classified; ``rules_accuracy`` of the rules'
        classified pixels against the truth.

    Examples
    --------
    >>> r, u, t = np.array([1, 2, 2, 0]), np.array([1, 3, 1, 2]), np.array([1, 3, 2, 2])
    >>> c = what_the_unet_changed(r, u, t)
    >>> c["changed"], c["corrected"], c["broken"], c["filled"]
    (2, 1, 1, 1)
    """
    classed = lambda m: (m >= 1) & (m <= 250)  # noqa: E731 - 0, 254 (masked) and 255 are no classes
    both = classed(rules) & classed(unet)
    changed = both & (rules != unet)
    return {
        "both": int(both.sum()),
        "agreement": float((rules[both] == unet[both]).mean()) if both.any() else float("nan"),
        "changed": int(changed.sum()),
        "corrected": int((changed & (unet == truth)).sum()),
        "broken": int((changed & (rules == truth)).sum()),
        "filled": int(((rules == 0) & classed(unet)).sum()),
        "rules_accuracy": float((rules[classed(rules)] == truth[classed(rules)]).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m snap_operators.apps.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    ap.add_argument("--size", type=int, default=1024, help="scene width/height in pixels (default 1024)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=15, help="U-Net training epochs (default 15; 0 skips training)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr.isatty()
    try:
        from .assess import assess, format_report, write_report
        from .quicklook import write_area_chart, write_class_quicklook
        from .synth import write_synthetic_scene

        print(f"1. synthetic scene {args.size} x {args.size} px (seed {args.seed}) in {out}/scene")
        scene = write_synthetic_scene(out / "scene", args.size, args.seed, progress=progress, haze=True,
                                      mixed_pixels=True)
        for step, (graph, tag, extra) in enumerate(
            [
                ("progressive_classifier_s2.xml", "s2", {}),
                ("progressive_classifier_s1s2.xml", "s1s2", {"inputS1": str(scene["s1"])}),
            ],
            start=2,
        ):
            print(f"{step}. {graph} (standalone Dask engine)")
            classes = out / f"classes_{tag}.tif"
            variables = {
                "input": str(scene["s2"]),
                "output": str(classes),
                "labels": str(out / f"labels_{tag}.gpkg"),
                "areaTable": str(out / f"raster_areas_{tag}.csv"),
                **extra,
            }
            run(graph, variables, progress)
            look = write_class_quicklook(classes, out / f"classes_{tag}.png", title=f"{graph} on the synthetic scene")
            chart = write_area_chart(read_area_csv(out / f"raster_areas_{tag}.csv"),
                                     out / f"raster_areas_{tag}.png")
            print(f"   quicklooks: {look}, {chart}")
            result = assess(classes, scene["truth"])
            write_report(result, out / f"accuracy_{tag}")
            print(f"   accuracy against the synthetic truth ({out / f'accuracy_{tag}'}):")
            print("   " + format_report(result).replace("\n", "\n   "))
        model = train_unet(out, scene, epochs=args.epochs, step=step + 1)
        if model is not None:
            unet_inference(out, scene, model, progress, step=step + 2)
    except SnapPcError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"outputs are in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
