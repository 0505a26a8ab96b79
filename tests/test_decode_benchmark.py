"""benchmarks/decode.py: the folder-vs-shards comparison runs on a few tiny JPEGs and reads every
image in each of its four variants.  No timed assertions."""

from tests.helpers import load_benchmark


def test_folder_vs_shards_reads_the_same_images_four_ways(tmp_path):
    bench = load_benchmark("decode")
    bench.make_jpegs(str(tmp_path / "jpegs"), 5, 60, 40)
    report = bench.measure_folder_vs_shards(str(tmp_path / "jpegs"), str(tmp_path / "work"), 24, rounds=1, shard_size=2)
    assert report["images"] == 5 and report["bytes"]["folder_resized"] < report["bytes"]["folder"]
    for variant in ("folder", "shards", "folder_resized", "shards_resized"):
        assert report[variant]["images_per_cpu_s"] > 0, variant
    assert sorted(p.name for p in (tmp_path / "work" / "shards").iterdir()) == [
        "shards.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]
