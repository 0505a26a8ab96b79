"""``contrastive report``: the HTML page of a finished tiny run, its sections and embedded PNGs,
notes where inputs are missing, and the page in a real headless browser (Debian's chromium)."""

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.evaluation import evaluate, load_run
from contrastive.evaluation.report import SECTIONS
from contrastive.evaluation.report.collect import read_metrics
from contrastive.training import fit
from tests.helpers import photo_folder, tiny_recipe_dict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, registries):
    """Two epochs of 5 steps on 179 digits, online kNN after each, final kNN on 180 other digits;
    fit writes the report."""
    out = tmp_path_factory.mktemp("reportrun")
    raw = tiny_recipe_dict(str(out), max_steps=None, max_epochs=2, batch_size=32)
    raw["data"]["args"]["test_fraction"] = 0.9
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": ["knn"], "monitor_every": 1,
                   "test_data": {"name": "digits", "args": {"train": False, "test_fraction": 0.1, "image_size": 16}}}
    raw["report"] = True
    results = fit(recipes.validate(raw, registries), registries)
    return out, results


class Page(HTMLParser):
    """The sections of a report: per section id, its images (src, alt), notes and text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.in_note = False
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.current = self.sections.setdefault(attrs["id"], {"images": [], "notes": [], "text": ""})
        elif tag == "img" and self.current is not None:
            self.current["images"].append((attrs["src"], attrs.get("alt", "")))
        elif tag == "p" and attrs.get("class") == "note" and self.current is not None:
            self.in_note = True
            self.current["notes"].append("")

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        if tag == "p":
            self.in_note = False

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data
            if self.in_note:
                self.current["notes"][-1] += data


def decode(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
    assert image.format == "PNG"
    image.load()
    return image


def not_blank(image: Image.Image) -> bool:
    return float(np.asarray(image.convert("L"), dtype=float).std()) > 5.0


def report_of(run: Path, tmp_path: Path, capsys, *extra: str) -> Page:
    target = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(target), *extra]) == 0
    assert capsys.readouterr().out.strip() == f"report: {target}"
    return Page(target.read_text())


def test_fit_writes_the_report(finished_run):
    out, results = finished_run
    assert results["report"] == str(out / "report.html")
    assert "report" not in json.loads((out / "results.json").read_text())  # results.json: the measurements only
    page = Page((out / "report.html").read_text())
    assert [key for key, _ in SECTIONS] == list(page.sections)
    assert yaml.safe_load((out / "config.yaml").read_text())["report"] is True


def test_report_holds_every_section_with_decodable_images(finished_run, tmp_path, capsys):
    out, results = finished_run
    page = report_of(out, tmp_path, capsys)
    assert list(page.sections) == [key for key, _ in SECTIONS]
    assert "script" not in page.tags and "link" not in page.tags  # self-contained, nothing to run or fetch
    for key in ("curves", "online-knn", "map", "neighbours", "views"):
        section = page.sections[key]
        assert len(section["images"]) == 1 and section["notes"] == [], key
        image = decode(section["images"][0][0])
        assert image.width > 100 and image.height > 100 and not_blank(image), key
    training, evaluation = read_metrics(out)
    keys = {k for r in training for k, v in r.items() if k not in ("step", "epoch") and isinstance(v, (int, float))}
    assert {"loss", "lr", "views_per_second"} <= keys
    curve_alt = page.sections["curves"]["images"][0][1]
    assert all(k in curve_alt for k in keys), (keys, curve_alt)  # every numeric series is drawn
    assert [r["epoch"] for r in evaluation] == [0, 1]
    table = page.sections["evaluation"]["text"]
    assert "learned" in table and "random init" in table and "raw pixels" in table and "kNN top-1" in table
    assert f"{results['eval']['knn_top1']:.4f}" in table
    assert "179 train / 180 test images" in table
    assert "t-SNE of the frozen features of all 180 test images" in page.sections["map"]["text"]
    assert "nearest training images by cosine of the frozen features (among 179)" in page.sections["neighbours"]["text"]


def test_report_shows_the_online_linear_probe(finished_run, tmp_path, capsys):
    out, _ = finished_run
    training, evaluation = read_metrics(out)
    assert all(0 <= r["online_linear_train_top1"] <= 1 for r in training)  # eval.online_linear: on by default
    assert [0 <= r["online_linear_top1"] <= 1 for r in evaluation] == [True, True]  # beside each online kNN
    page = report_of(out, tmp_path, capsys)
    assert "online_linear_train_top1" in page.sections["curves"]["images"][0][1]
    assert "online_linear_top1" in page.sections["online-knn"]["images"][0][1]


def test_pca_map_and_sample(finished_run, tmp_path, capsys):
    out, _ = finished_run
    page = report_of(out, tmp_path, capsys, "--map", "pca", "--map-points", "50")
    assert "PCA of the frozen features of a seeded sample of 50 of the 180 test images" in page.sections["map"]["text"]


def test_missing_results_and_metrics_give_notes(finished_run, tmp_path, capsys):
    out, _ = finished_run
    run = tmp_path / "weights_only"
    run.mkdir()
    for name in ("config.yaml", "backbone.safetensors"):
        shutil.copy(out / name, run / name)
    page = report_of(run, tmp_path, capsys)
    for key, words in (("curves", "no training records"), ("online-knn", "eval.monitor_every"),
                       ("evaluation", "no results.json yet")):
        assert page.sections[key]["images"] == [] and words in page.sections[key]["notes"][0], key
    for key in ("map", "neighbours", "views"):  # what the backbone and the data give is still there
        assert len(page.sections[key]["images"]) == 1 and page.sections[key]["notes"] == [], key


def test_metrics_only_gives_curves_and_notes(finished_run, tmp_path, capsys):
    out, _ = finished_run
    run = tmp_path / "metrics_only"
    run.mkdir()
    shutil.copy(out / "metrics.jsonl", run / "metrics.jsonl")
    page = report_of(run, tmp_path, capsys)
    assert len(page.sections["curves"]["images"]) == 1 and len(page.sections["online-knn"]["images"]) == 1
    for key in ("map", "neighbours", "views"):
        assert page.sections[key]["images"] == [] and "has no config.yaml" in page.sections[key]["notes"][0], key


def test_unlabelled_folder_gives_label_free_table_and_notes(finished_run, tmp_path, capsys, registries):
    """The run's backbone on a flat folder of photos (no labels, wider than tall): label-free table,
    one-colour map, neighbours unmarked, views of a whole image."""
    out, _ = finished_run
    photos = photo_folder(tmp_path / "photos", 12, height=16, width=24)
    run = tmp_path / "folder_run"
    run.mkdir()
    shutil.copy(out / "backbone.safetensors", run / "backbone.safetensors")
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["data"] = {"name": "image_folder", "args": {"root": str(photos), "image_size": 16}}
    config["eval"] = {"protocols": "auto", "holdout": 0.25}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    recipe, backbone = load_run(run, registries)
    (run / "results.json").write_text(json.dumps({"eval": evaluate(backbone, recipe, registries)}))
    page = report_of(run, tmp_path, capsys)
    table = page.sections["evaluation"]["text"]
    assert "alignment" in table and "uniformity" in table and "eff. rank" in table and "kNN top-1" not in table
    assert "has no labels" in page.sections["evaluation"]["notes"][0]
    assert "every point is drawn in one colour" in page.sections["map"]["notes"][0]
    assert "cannot be marked right or wrong" in page.sections["neighbours"]["notes"][0]
    for key in ("map", "neighbours", "views"):
        assert not_blank(decode(page.sections[key]["images"][0][0])), key


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "does not exist"),
    (lambda tmp: tmp, "not a run's trainer.output_dir"),
])
def test_user_errors_exit_2(tmp_path, capsys, make, message):
    assert main(["report", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["false", "true"])
def test_fit_report_override(tmp_path, capsys, value):
    """``contrastive fit --report false`` writes none; ``true`` writes one (evaluation off: the
    table is a note, the rest is there) and prints its path last."""
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=2)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    assert main(["fit", "--recipe", str(tmp_path / "recipe.yaml"), "--report", value]) == 0
    out = capsys.readouterr().out
    page = tmp_path / "run" / "report.html"
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["report"] is (value == "true")
    if value == "false":
        assert not page.exists() and "report:" not in out
        return
    assert out.strip().splitlines()[-1] == f"report: {page}"
    sections = Page(page.read_text()).sections
    assert "no final evaluation (eval.protocols [])" in sections["evaluation"]["notes"][0]
    assert all(len(sections[key]["images"]) == 1 for key in ("curves", "map", "neighbours", "views"))


def test_recipe_report_key_is_checked(registries):
    from contrastive.training.resume import recipe_differences

    assert recipes.load("quickstart", ["--report", "false"], registries).report is False
    assert recipes.load("quickstart", [], registries).report is True
    assert "--report                           bool (default: true)" in recipes.settings_help()
    assert recipe_differences({"report": True}, {"report": False}) == []  # resume auto continues either way
    with pytest.raises(recipes.RecipeError, match="report should be true or false"):
        recipes.load("quickstart", ["--report", "sometimes"], registries)


def test_a_failing_report_leaves_the_run_and_warns(tmp_path, registries, capsys, monkeypatch):
    import contrastive.evaluation.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("the plot went\nwrong")

    monkeypatch.setattr(report, "write_report", broken)
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=2)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["report"] = True
    results = fit(recipes.validate(raw, registries), registries)
    assert (tmp_path / "run" / "results.json").is_file() and "report" not in results
    err = capsys.readouterr().err
    assert "warning: report not written (the plot went wrong); try again: contrastive report" in err


# -- a real browser -------------------------------------------------------------------------------------
PROBE = """<script>window.addEventListener("load", () => { const p = document.createElement("pre");
p.id = "probe"; p.textContent = JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth]));
document.body.appendChild(p); });</script>"""


def chromium(page: Path, tmp_path: Path, *action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *action, page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )


def browse(html: str, tmp_path: Path, name: str) -> tuple[list[str], list[list]]:
    """``(console lines, [complete, naturalWidth] per image)`` of ``html`` with :data:`PROBE` added (to a
    copy: the shipped page has no script) after chromium loaded it."""
    page = tmp_path / name
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    done = chromium(page, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    start = done.stdout.index('<pre id="probe">') + len('<pre id="probe">')  # the probe's text in the dumped DOM
    return console, json.loads(done.stdout[start:done.stdout.index("</pre>", start)])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); the page is "
                    "checked in a real browser only where it is")
def test_report_in_a_headless_browser(finished_run, tmp_path):
    out, _ = finished_run
    html = (out / "report.html").read_text()
    # the checks can fail: a console error and a broken image are seen on a control page
    console, images = browse('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                             '<script>console.error("probe-error")</script></body></html>', tmp_path, "control.html")
    assert any("probe-error" in line for line in console) and images == [[True, 0]]

    console, images = browse(html, tmp_path, "report.html")
    assert console == []
    assert len(images) == 5 and all(complete and width > 0 for complete, width in images), images
    shot = tmp_path / "shot.png"
    done = chromium(out / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    screenshot = Image.open(shot)
    assert screenshot.size == (1200, 2400)
    assert len(screenshot.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 16 and not_blank(screenshot)


def test_the_map_without_scikit_learn_is_pca_and_says_why(monkeypatch):
    import torch

    from contrastive.evaluation.report.collect import pca_2d, project_2d

    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    modules = __import__("sys").modules
    for name in [m for m in modules if m == "sklearn" or m.startswith("sklearn.")] + ["sklearn"]:
        monkeypatch.setitem(modules, name, None)  # an install without the optional package
    coords, name = project_2d(features, seed=0)
    assert name.startswith("PCA") and "pip install scikit-learn" in name and coords.shape == (40, 2)
    x = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    centred = x - x.mean(axis=0)
    # the two axes of largest variance: their variances are the top two squared singular values / n
    top = np.linalg.svd(centred, compute_uv=False)[:2] ** 2
    assert np.allclose(np.sort((pca_2d(x) ** 2).sum(axis=0))[::-1], top)
