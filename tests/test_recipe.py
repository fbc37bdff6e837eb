"""The report names the recipe each model was trained with."""

import copy
from pathlib import Path

import pytest
import yaml

from lungsynth.config import load_config, validate_config
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


def test_recipe_table_names_a_changed_lus_schedule():
    config = copy.deepcopy(load_config("config/paper/lus_rasgan.yaml"))
    config["lusgan"]["train"].update(lr_g=1e-4, lr_d=4e-4, g_steps_per_d=1)
    config["lusgan"]["model"]["minibatch_std"] = 4
    recipe = recipe_table(config, "lusgan", "seed 003")["recipe"].tolist()[0]
    assert recipe == "seed 003 + critic minibatch std (groups of 4) + lr_g 0.0001 / lr_d 0.0004 + 1 G step per D step"


@pytest.mark.parametrize("path, branch, paper", [("config/paper/dcgan_covidct.yaml", "dcgan", "seed 000"),
                                                 ("config/paper/lus_rasgan.yaml", "lusgan", "seed 003")])
def test_paper_configs_merged_over_the_default_keep_the_papers_recipe(path, branch, paper):
    """``snakemake --configfile config/paper/X`` deep-merges X over config/config.yaml, whose recipe is the
    improved one: the paper config must switch every improvement off again."""
    from snakemake.utils import update_config

    merged = yaml.safe_load(Path("config/config.yaml").read_text())
    update_config(merged, yaml.safe_load(Path(path).read_text()))
    assert set(recipe_table(validate_config(merged), branch, paper)["recipe"]) == {paper}
    default = recipe_table(load_config("config/config.yaml"), branch, paper)["recipe"]
    assert all(recipe.startswith(paper + " + ") for recipe in default)  # the default run's is the improved one


def test_recipe_table_names_each_conditional_gan_and_the_shared_switches():
    config = copy.deepcopy(load_config("config/paper/cgan_seed001.yaml"))
    table = recipe_table(config, "cgan", "seed 001")
    assert table["model"].tolist()[:5] == ["globallocal", "pix2pix", "pix2pixhd", "spade", "sean"]
    assert table["recipe"].tolist()[:2] == ["Seed 001 (DESUM + DFM)", "Pix2pix"]
    config["cgan"]["train"].update(ema_decay=0.999, diffaugment="translation")
    assert all(r.endswith(" + DiffAugment (translation; p 1) + EMA 0.999") for r in recipe_table(config, "cgan", "")["recipe"])
