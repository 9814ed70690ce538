"""The UNet's training checks repeat a run with skips that stayed under the threshold from the next seed
(graders/_unet.py, skip_run_with_retry): a slow start of correct code is not a failure, a UNet that
cannot learn fails on both seeds, and the run without skips is paired with the seed of the run kept."""

from __future__ import annotations

import pytest

from tests._toys import graders_module


@pytest.fixture
def unet():
    return graders_module("_unet")


def fake_training(monkeypatch, unet, ious: dict[int, float]) -> list[int]:
    seeds: list[int] = []

    def train(submission, grade_cache, data, disable, seed=unet.UNET_TRAIN_SEED):
        assert not disable
        seeds.append(seed)
        return {"mean_iou": ious[seed], "seed": seed}

    monkeypatch.setattr(unet, "train_unet", train)
    return seeds


def test_a_run_that_learns_is_not_repeated(monkeypatch, unet):
    first, second = unet.UNET_TRAIN_SEEDS
    seeds = fake_training(monkeypatch, unet, {first: 0.8, second: 0.9})
    run = unet.skip_run_with_retry(None, None, {})
    assert seeds == [first] and run["seed"] == first and "retried" not in run
    assert unet.retry_note(run) == ""


def test_a_slow_start_is_repeated_from_the_next_seed_and_the_better_run_kept(monkeypatch, unet):
    first, second = unet.UNET_TRAIN_SEEDS
    seeds = fake_training(monkeypatch, unet, {first: 0.21, second: 0.85})
    run = unet.skip_run_with_retry(None, None, {})
    assert seeds == [first, second] and run["seed"] == second and run["mean_iou"] == 0.85
    assert run["retried"] == [{"seed": first, "mean_iou": 0.21}, {"seed": second, "mean_iou": 0.85}]
    assert f"seed {first} stayed at 0.210" in unet.retry_note(run)


def test_a_unet_that_cannot_learn_stays_under_on_both_seeds(monkeypatch, unet):
    first, second = unet.UNET_TRAIN_SEEDS
    fake_training(monkeypatch, unet, {first: 0.31, second: 0.29})
    run = unet.skip_run_with_retry(None, None, {})
    assert run["seed"] == first and run["mean_iou"] < unet.LEARN_THRESHOLD
