"""benchmarks/throughput.py: every benchmark function runs on tiny inputs and the CLI prints JSON.

No timed assertions: the numbers depend on the machine and on whatever else runs on it.
"""

import json

import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("throughput")


def test_augmentation_functions(bench):
    ours = bench.bench_aug_ours(16, 4, steps=1, warmup=0)
    ref = bench.bench_aug_torchvision(16, 4, workers=0, steps=1, warmup=0)
    kornia = bench.bench_aug_kornia(16, 4, steps=1, warmup=0)
    for result in (ours, ref, kornia):
        assert result["views_per_s"] > 0 and result["size"] == 16 and result["batch"] == 4


def test_single_op_rows_cover_builtins_and_kornia_names(bench):
    rows = bench.bench_aug_ops(16, 4, steps=1, warmup=0, names=["grayscale", "kornia_random_rotation"])
    assert [r["name"] for r in rows] == ["grayscale", "kornia_random_rotation"]
    assert all(r["views_per_s"] > 0 and r["size"] == 16 for r in rows)


def test_train_ours_reads_results_json(bench):
    result = bench.bench_train_ours(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0)
    assert result["views_per_s"] > 0 and result["peak_memory_mb"] > 0


def test_train_lightly_reference(bench):
    pytest.importorskip("lightly")
    result = bench.bench_train_lightly(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0)
    assert result["views_per_s"] > 0 and result["peak_memory_mb"] > 0 and result["steps_timed"] == 1


def test_cli_prints_json(bench, capsys, tmp_path):
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--parts", "aug", "--workers", "0", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["preset"] == "quick" and "augmentation_16px" in printed["ratios"]
    assert {"augmentation_16px_vs_kornia", "augmentation_16px_twist_jitter_vs_kornia"} <= set(printed["ratios"])
    assert {a.get("jitter_mode") for a in printed["augmentation"]} >= {"sequential", "twist"}
    assert any(a["impl"].startswith("kornia") for a in printed["augmentation"])
    assert {"kornia_random_rotation", "color_jitter"} <= {r["name"] for r in printed["augmentation_ops"]}


def test_train_ours_runs_other_methods_and_multicrop(bench):
    result = bench.bench_train_ours(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0,
                                    method="supcon", local_views=2)
    assert result["method"] == "supcon" and result["views_per_image"] == 4
    assert result["images_per_s"] == pytest.approx(result["views_per_s"] / 4)


@pytest.mark.parametrize("method", ["byol", "simsiam", "barlow_twins", "vicreg"])
def test_train_ours_runs_the_negative_free_methods(bench, method):
    assert method in {m for _, m, _ in bench.METHOD_ROWS}
    result = bench.bench_train_ours(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0, method=method)
    assert result["method"] == method and result["views_per_image"] == 2 and result["views_per_s"] > 0


def test_train_ours_runs_swav_multicrop(bench):
    assert ("swav_2x6", "swav", 6) in bench.METHOD_ROWS
    result = bench.bench_train_ours(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0,
                                    method="swav", local_views=2)
    assert result["method"] == "swav" and result["views_per_image"] == 4 and result["views_per_s"] > 0


def test_train_ours_runs_dino_with_its_head_and_multicrop(bench):
    assert ("dino_multicrop_2x6", "dino", 6) in bench.METHOD_ROWS
    assert bench.train_recipe("out", backbone="test_resnet", size=16, batch=4, steps=1, device="cpu", precision="no",
                              num_images=8, workers=0, channels_last=None, method="dino", local_views=6)["head"]["name"] == "dino"
    result = bench.bench_train_ours(backbone="test_resnet", size=16, batch=4, steps=1, warmup=1, workers=0, method="dino",
                                    local_views=2)
    assert result["method"] == "dino" and result["views_per_image"] == 4 and result["views_per_s"] > 0


def test_method_rows_runs_a_subset_beside_simclr_and_vicreg_trains_with_lars(bench, tmp_path):
    recipe = bench.train_recipe("out", backbone="test_resnet", size=16, batch=4, steps=1, device="cpu", precision="no",
                                num_images=8, workers=0, channels_last=None, method="vicreg")
    assert recipe["optimizer"]["name"] == "lars"
    out = tmp_path / "methods.json"
    assert bench.main(["--quick", "--parts", "methods", "--method-rows", "vicreg", "--workers", "0",
                       "--output", str(out)]) == 0
    rows = json.loads(out.read_text())["methods"]
    assert [row["method"] for row in rows] == ["simclr", "vicreg"]
    assert all("error" not in row for row in rows)


def test_method_rows_refuses_a_row_it_does_not_have(bench):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--quick", "--parts", "methods", "--method-rows", "vicrge"])
    assert exit_info.value.code == 2
