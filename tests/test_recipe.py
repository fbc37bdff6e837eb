"""The report names the recipe each model was trained with."""

import copy

from lungsynth.config import load_config
from lungsynth.methods.data_efficient import describe_recipe
from lungsynth.report.build import recipe_table


def test_paper_recipe_when_every_switch_is_off():
    assert describe_recipe({}, "seed 003") == "seed 003"
    assert describe_recipe({"ema_decay": 0.0, "diffaugment": ""}, "seed 003", {"critic spectral norm": False}) == "seed 003"


def test_each_switch_on_is_named():
    settings = {"diffaugment": "translation,cutout", "ada_target": 0.6, "ema_decay": 0.99, "r1_gamma": 1.0,
                "r1_every": 4}
    text = describe_recipe(settings, "seed 000", {"critic spectral norm": True})
    assert text == ("seed 000 + DiffAugment (translation,cutout; ADA target 0.6) + EMA 0.99 + R1 1 every 4 "
                    "+ critic spectral norm")
    assert "p 0.5" in describe_recipe({"diffaugment": "color", "augment_p": 0.5}, "x")


def test_recipe_table_follows_per_class_overrides_and_paper_configs():
    config = load_config("config/paper/lus_rasgan.yaml")
    table = recipe_table(config, "lusgan", "seed 003")
    assert set(table["recipe"]) == {"seed 003"}
    changed = copy.deepcopy(config)
    changed["lusgan"]["per_class"] = {config["lusgan"]["classes"][0]: {"ema_decay": 0.999}}
    table = recipe_table(changed, "lusgan", "seed 003")
    assert table["recipe"].tolist()[0] == "seed 003 + EMA 0.999"
    assert set(table["recipe"].tolist()[1:]) == {"seed 003"}
