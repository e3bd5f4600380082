"""``benchmarks/bench_unet_inference.py``'s engine rounds: alternating order and the median table."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_unet_inference as bench  # noqa: E402


def test_rounds_alternate_the_order_and_the_table_gives_medians_against_the_network_alone(monkeypatch, tmp_path):
    calls = []
    seconds = iter([10.0, 11.0, 12.0, 10.5, 9.0, 12.5, 10.0, 11.0, 13.0])

    def fake_run(graph, model, s2, warm, out, **params):
        variant = "alone" if graph.name == "False.xml" else params.get("minRuleMargin", "default")
        calls.append(variant)
        t = next(seconds)
        return {"seconds": t, "peak_rss_mib": 100.0 if variant == "alone" else 110.0, "user_s": 1.5 * t,
                "system_s": 0.25 * t, "page_faults": 1000 if variant == "alone" else 3000}

    monkeypatch.setattr(bench, "engine_run", fake_run)
    monkeypatch.setattr(bench, "scene", lambda work, size: tmp_path / f"{size}.tif")
    monkeypatch.setattr(bench, "raster_graph", lambda work, fusion: tmp_path / f"{fusion}.xml")
    runs = bench.engine_rows({"small": {"path": tmp_path / "m.onnx"}}, tmp_path, [(64, "small")], [256], [1], "cpu",
                             fusions=(None, "", "Infinity"), rounds=3)
    # A B C, C B A, A B C: no variant always runs first
    assert calls == ["alone", "default", "Infinity", "Infinity", "default", "alone", "alone", "default", "Infinity"]
    table = bench.median_table(runs)
    rows = {line.split(" | ")[5]: line.split(" | ") for line in table.splitlines()[2:]}
    # network alone: 10.0, 12.5, 10.0 -> 10.0; default: 11.0, 9.0, 11.0 -> 11.0, 1.10 x; Infinity 12.0, 1.20 x
    assert rows["no"][6] == "10.0, 12.5, 10.0" and rows["no"][7] == "10.0" and rows["no"][8] == "1.00"
    assert rows["minRuleMargin default"][6] == "11.0, 9.0, 11.0"
    assert rows["minRuleMargin default"][8] == "1.10" and rows["minRuleMargin default"][9] == "110"
    # CPU medians: user 1.5 x and system 0.25 x the times' medians; page faults per variant
    assert rows["no"][10] == "15.0 / 2.5" and rows["no"][11] == "1000 |"
    assert rows["minRuleMargin default"][10] == "16.5 / 2.8" and rows["minRuleMargin default"][11] == "3000 |"
    assert rows["minRuleMargin Infinity"][7] == "12.0" and rows["minRuleMargin Infinity"][8] == "1.20"
