"""Recipe loading, dotted overrides and validation with suggestions."""

import pytest
import yaml

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from tests.helpers import load_benchmark, tiny_recipe_dict


def test_parse_overrides_types():
    pairs = recipes.parse_overrides(["--a.b", "0.2", "--c=true", "--d", "[0.5, 1.0]", "--e", "resnet10t"])
    assert pairs == [("a.b", 0.2), ("c", True), ("d", [0.5, 1.0]), ("e", "resnet10t")]


def test_override_missing_value():
    with pytest.raises(RecipeError, match="needs a value"):
        recipes.parse_overrides(["--trainer.max_epochs"])


def test_apply_overrides_nested_and_list_index(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    out = recipes.apply_overrides(raw, [("loss.args.temperature", 0.2), ("augmentation.1.args.p", 0.1),
                                        ("backbone.name", "resnet10t"), ("head.args.new", 1)])
    assert out["loss"]["args"]["temperature"] == 0.2
    assert out["augmentation"][1]["args"]["p"] == 0.1
    assert out["backbone"]["name"] == "resnet10t"
    assert raw["loss"]["args"]["temperature"] == 0.5  # the input is not modified


def test_unknown_top_level_key_suggests():
    with pytest.raises(RecipeError, match="did you mean 'trainer'"):
        recipes.apply_overrides({}, [("traner.max_epochs", 1)])


def test_list_index_out_of_range(tmp_path):
    with pytest.raises(RecipeError, match="out of range"):
        recipes.apply_overrides(tiny_recipe_dict(str(tmp_path)), [("augmentation.9.args.p", 0.1)])


def test_trainer_key_and_type_errors(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["trainer"]["max_epoch"] = 3
    with pytest.raises(RecipeError, match="did you mean 'max_epochs'"):
        recipes.validate(raw)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["trainer"]["batch_size"] = "big"
    with pytest.raises(RecipeError, match="batch_size should be int"):
        recipes.validate(raw)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["trainer"]["mixed_precision"] = "fp8"
    with pytest.raises(RecipeError, match="one of 'no', 'fp16', 'bf16'"):
        recipes.validate(raw)


def test_component_name_and_argument_errors(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["loss"]["name"] = "ntxnet"
    with pytest.raises(RecipeError, match=r"unknown loss 'ntxnet' — did you mean 'ntxent'\? \(contrastive list losses\)"):
        recipes.validate(raw, registries)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["loss"]["args"] = {"temprature": 0.1}
    with pytest.raises(RecipeError, match="did you mean 'temperature'"):
        recipes.validate(raw, registries)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["loss"]["args"] = {"temperature": "hot"}
    with pytest.raises(RecipeError, match="temperature' should be float"):
        recipes.validate(raw, registries)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["head"]["args"]["in_dim"] = 3
    with pytest.raises(RecipeError, match="supplied by the engine"):
        recipes.validate(raw, registries)


def test_missing_sections_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="missing"):
        recipes.validate({"seed": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        recipes.read_recipe(str(bad))
    with pytest.raises(RecipeError, match="does not exist"):
        recipes.read_recipe(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("name", ["quickstart", "simclr_r50", "simclr_r18_cifar10", "simclr_fmnist"])
def test_shipped_recipes_validate(name, registries):
    recipe = recipes.load(name, registries=registries)
    assert recipe.loss.name == "ntxent"
    assert yaml.safe_load(recipes.dump(recipe))["backbone"]["name"] == recipe.backbone.name


@pytest.mark.parametrize("name", recipes.builtin_recipes())
def test_check_accepts_every_shipped_recipe(name, capsys, tmp_path):
    from PIL import Image

    from contrastive.cli import main

    extra = []
    data = recipes.read_recipe(name)["data"]
    if data["name"] == "image_folder" and "root" not in data.get("args", {}):  # simclr_folder: root from the command line
        for i in range(20):
            Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
        extra = ["--data.args.root", str(tmp_path)]
    assert main(["check", "--recipe", name, *extra]) == 0
    assert capsys.readouterr().out.startswith("recipe OK: ")


def _fmnist_benchmark():
    return load_benchmark("fmnist")


@pytest.mark.parametrize("method", ["simclr", "supcon", "moco", "moco_v3", "nnclr", "byol", "simsiam", "barlow_twins", "vicreg",
                                    "swav", "dino"])
def test_fmnist_cpu_recipes_are_what_the_benchmark_trains(method, registries):
    """``recipes/METHOD_fmnist_cpu.yaml`` and ``benchmarks/fmnist.py --preset cpu --method METHOD``
    resolve to the same recipe (up to the output folder, and the loss section of the methods
    that have their own loss), so the benchmark's numbers are the recipe's."""
    bench = _fmnist_benchmark()
    args = bench.parse_args(["--preset", "cpu", "--method", method])
    ours, _ = bench.build_recipe(args, registries, method)
    shipped = recipes.load(f"{method}_fmnist_cpu", registries=registries)
    a, b = yaml.safe_load(recipes.dump(ours)), yaml.safe_load(recipes.dump(shipped))
    for doc in (a, b):
        doc["trainer"].pop("output_dir")
    if "loss" not in recipes.method_parts(registries.methods.get(method)):
        a.pop("loss", None)
    assert shipped.method.name == method
    assert a == b


def test_r50_recipe_has_paper_settings(registries):
    recipe = recipes.load("recipes/simclr_r50.yaml", registries=registries)
    assert recipe.backbone.name == "resnet50"
    assert recipe.optimizer.name == "lars" and recipe.optimizer.args["lr"] == 0.3
    assert recipe.optimizer.args["lr_scaling"] == "linear" and recipe.optimizer.args["weight_decay"] == 1e-6
    assert recipe.loss.args["temperature"] == 0.1
    assert recipe.scheduler.args["warmup_epochs"] == 10
    assert recipe.head.args == {"hidden_dim": 2048, "out_dim": 128, "num_layers": 2}
    blur = next(a for a in recipe.augmentation if a.name == "gaussian_blur")
    assert blur.args["kernel_fraction"] == 0.1 and blur.args["sigma"] == [0.1, 2.0]
    jitter = next(a for a in recipe.augmentation if a.name == "color_jitter")
    assert [jitter.args[k] for k in ("brightness", "contrast", "saturation", "hue", "p")] == [0.8, 0.8, 0.8, 0.2, 0.8]


# -- method:, views:, predictor: -------------------------------------------------------------
def test_method_defaults_to_simclr_and_round_trips(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path))
    recipe = recipes.validate(raw, registries)
    assert recipe.method == recipes.Component("simclr", {})
    resolved = recipe.to_dict()
    assert list(resolved)[:4] == ["seed", "data", "method", "augmentation"] and "views" not in resolved
    assert recipes.validate(yaml.safe_load(recipes.dump(recipe)), registries) == recipe
    assert [g.count for g in recipe.view_groups(2)] == [2] and recipe.global_augmentation == recipe.augmentation
    overridden = recipes.apply_overrides(raw, recipes.parse_overrides(["--method.name", "supcon"]))
    assert recipes.validate(overridden, registries).method.name == "supcon"


def test_method_errors_name_the_key(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["method"] = {"name": "simclr", "args": {"backbone": "resnet18"}}
    with pytest.raises(RecipeError, match="method.args.backbone is supplied by the engine"):
        recipes.validate(raw, registries)
    raw["method"] = {"name": "simclr", "args": {"views": 3}}
    with pytest.raises(RecipeError, match=r"^method: method 'simclr' has no argument 'views'"):
        recipes.validate(raw, registries)
    raw["method"] = {"name": "simclr"}
    raw["predictor"] = {"name": "mlp"}
    with pytest.raises(RecipeError, match="method 'simclr' takes no predictor"):
        recipes.validate(raw, registries)


def test_a_method_that_needs_a_predictor_says_so(tmp_path):
    import contrastive
    from contrastive.methods.simclr import SimCLR

    class WithPredictor(SimCLR):
        def __init__(self, backbone, head, loss, predictor) -> None:
            super().__init__(backbone, head, loss)
            self.predictor = predictor

    registries = contrastive.load_registries(autoload=False)
    registries.methods.register("with_predictor", WithPredictor)
    raw = tiny_recipe_dict(str(tmp_path))
    raw["method"] = {"name": "with_predictor"}
    with pytest.raises(RecipeError, match="method 'with_predictor' needs a predictor; add predictor:") as caught:
        recipes.validate(raw, registries)
    example = "{name: mlp, args: {hidden_dim: 32, out_dim: 16}}"  # sized to the recipe's head (32 -> 16)
    assert f"add predictor: {example} to the recipe, or --predictor '{example}'" in str(caught.value)
    assert recipes.parse_overrides(["--predictor", example]) == [("predictor", {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}})]
    raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 8, "out_dim": 4}}
    assert recipes.validate(raw, registries).predictor.name == "mlp"
    assert "predictor" in recipes.validate(raw, registries).to_dict()


def test_views_groups_validate(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path))
    steps = raw.pop("augmentation")
    raw["views"] = [{"count": 2, "augmentation": steps}, {"count": 6, "augmentation": steps[:1]}]
    recipe = recipes.validate(raw, registries)
    assert recipe.augmentation is None and [g.count for g in recipe.view_groups(2)] == [2, 6]
    assert recipe.global_augmentation == recipe.views[0].augmentation
    assert "views" in recipe.to_dict() and "augmentation" not in recipe.to_dict()
    assert recipes.validate(yaml.safe_load(recipes.dump(recipe)), registries) == recipe
    bad = [
        ({**raw, "augmentation": steps}, "both 'augmentation' and 'views'"),
        ({**raw, "views": []}, "non-empty list of view groups"),
        ({**raw, "views": [{"count": 0, "augmentation": steps}]}, r"views.0.count' must be a positive int"),
        ({**raw, "views": [{"count": 2}]}, "views.0' is missing augmentation"),
        ({**raw, "views": [{"count": 2, "augmentaton": steps}]}, "did you mean 'augmentation'"),
        ({**raw, "views": [{"count": 2, "augmentation": [{"name": "grayscal"}]}]},
         r"views.0.augmentation.0: unknown augmentation 'grayscal' — did you mean 'grayscale'"),
    ]
    for broken, message in bad:
        with pytest.raises(RecipeError, match=message):
            recipes.validate(broken, registries)
    del raw["views"]
    with pytest.raises(RecipeError, match="recipe is missing augmentation"):
        recipes.validate(raw)


def test_sections_turn_ints_into_floats_and_leave_the_input_alone(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path), grad_clip=1)
    raw["eval"] = {"knn_temperature": 1, "linear_weight_decay": 0, "protocols": []}
    recipe = recipes.validate(raw)
    assert recipe.trainer.grad_clip == 1.0 and isinstance(recipe.trainer.grad_clip, float)
    assert isinstance(recipe.eval.knn_temperature, float) and isinstance(recipe.eval.linear_weight_decay, float)
    assert isinstance(recipe.trainer.max_steps, int)
    assert raw["trainer"]["grad_clip"] == 1 and isinstance(raw["trainer"]["grad_clip"], int)


def test_head_and_loss_are_needed_only_by_methods_that_take_them(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path))
    del raw["loss"]
    with pytest.raises(RecipeError, match=r"method 'simclr' needs a loss; add loss: \{name: ntxent\}"):
        recipes.validate(raw, registries)
    raw["method"] = {"name": "moco", "args": {"queue_size": 64}}
    recipe = recipes.validate(raw, registries)
    assert recipe.loss is None and "loss" not in recipe.to_dict()
    assert recipes.validate(yaml.safe_load(recipes.dump(recipe)), registries) == recipe
    del raw["head"]
    with pytest.raises(RecipeError, match="method 'moco' needs a head; add head:"):
        recipes.validate(raw, registries)


@pytest.mark.parametrize(("total", "processes", "limit", "expected"), [
    (4096, 1, 512, (512, 8)), (4096, 8, 512, (512, 1)), (4096, 2, None, (2048, 1)), (4096, 32, 512, (128, 1)),
    (768, 1, 512, (384, 2)), (32, 1, 8, (8, 4)),
])
def test_global_batch_resolves_to_batch_and_accumulate(total, processes, limit, expected, registries):
    trainer = recipes.validate(tiny_recipe_dict("runs/x", global_batch_size=total, max_device_batch=limit), registries).trainer
    resolved = recipes.resolve_batch(trainer, processes)
    assert (resolved.batch_size, resolved.accumulate) == expected
    assert resolved.batch_size * processes * resolved.accumulate == total


def test_global_batch_that_cannot_be_shared_is_an_error(registries):
    trainer = recipes.validate(tiny_recipe_dict("runs/x", global_batch_size=4096, max_device_batch=512), registries).trainer
    with pytest.raises(RecipeError, match="cannot be shared by 3 processes"):
        recipes.resolve_batch(trainer, 3)
    odd = recipes.validate(tiny_recipe_dict("runs/x", global_batch_size=4099, max_device_batch=512), registries).trainer
    with pytest.raises(RecipeError, match="use a multiple of 512"):
        recipes.resolve_batch(odd, 1)


def test_paper_recipes_state_the_global_batch(capsys):
    from contrastive.cli import main

    assert main(["fit", "--recipe", "simclr_r50", "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "global_batch_size: 4096" in out
    assert "# global batch 4096 = 1 process x batch_size 512 x accumulate 8" in out
