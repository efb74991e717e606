"""precision: auto on the CPU at hand: timed where bf16 exists, fp32 where not."""

import numpy as np
import torch

from rtpose.nn.models import InstanceArch
from rtpose.nn.unet import UNetSpec
from rtpose.train import precision as P


def tiny() -> InstanceArch:
    return InstanceArch(unet=UNetSpec(filters=4, filters_rate=2.0, down_blocks=2, up_blocks=2), crop_size=32,
                        sigma=2.0, n_nodes=3, n_classes=2, class_units=8, class_layers=2)


def test_a_configured_precision_is_taken_as_given():
    for name in ("fp32", "bf16"):
        choice = P.choose_precision(name, torch.device("cpu"), tiny().build, (2, 1, 32, 32))
        assert choice.precision == name and choice.step_ms == {}


def test_auto_follows_this_cpu():
    choice = P.choose_precision("auto", torch.device("cpu"), tiny().build, (2, 1, 32, 32), max_seconds=2.0)
    if P.bf16_supported(torch.device("cpu")):
        assert set(choice.step_ms) == {"fp32", "bf16"} and all(v > 0 for v in choice.step_ms.values())
        faster = min(choice.step_ms, key=choice.step_ms.get)
        assert choice.precision in ("fp32", faster)  # fp32 keeps ties within 5%
        assert f"fp32 {choice.step_ms['fp32']:.0f} ms" in choice.reason
        # asked again in this process: the same answer, not a second timing
        assert P.choose_precision("auto", torch.device("cpu"), tiny().build, (2, 1, 32, 32)) is choice
    else:
        assert choice.precision == "fp32" and "without native bf16" in choice.reason


def test_the_timing_compares_both_and_restores_the_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    choice = P._timed_choice(torch.device("cpu"), tiny().build, (2, 1, 32, 32), max_seconds=1.0)
    assert torch.equal(torch.rand(3), expected)  # training's seed is untouched
    assert set(choice.step_ms) == set(choice.timings_ms) == {"fp32", "bf16"}
    rounds = len(choice.timings_ms["fp32"])
    assert P.MIN_ROUNDS - 1 <= rounds <= P.MAX_ROUNDS and len(choice.timings_ms["bf16"]) == rounds
    assert all(choice.step_ms[p] == min(choice.timings_ms[p]) for p in choice.step_ms)
    assert choice.precision == P.decide(choice.timings_ms)[0]  # the decision is the rule's, on what was timed
    assert f"timed {rounds} interleaved rounds" in choice.reason


# ------------------------------------------------- the decision, on given timings (seconds per step)


def test_bf16_clearly_faster_in_every_round_is_chosen():
    precision, why = P.decide({"fp32": [1.0, 1.02, 0.99], "bf16": [0.8, 0.81, 0.8]})
    assert precision == "bf16" and "fastest 0.81" in why


def test_a_load_burst_on_fp32_rounds_does_not_make_bf16_look_faster():
    """The old rule compared medians: three of five fp32 steps slowed 3x by another process
    made bf16 the 'faster' at the same real cost. The fastest steps are equal: fp32."""
    times = {"fp32": [1.0, 3.0, 3.0, 1.0, 3.0], "bf16": [1.05, 1.0, 1.0, 1.05, 1.0]}
    assert float(np.median(times["bf16"])) < 0.95 * float(np.median(times["fp32"]))  # what the old rule saw
    assert P.decide(times)[0] == "fp32"


def test_one_lucky_bf16_step_does_not_decide():
    times = {"fp32": [1.0, 1.0, 1.0, 1.0, 1.0], "bf16": [0.5, 1.1, 1.1, 1.1, 1.1]}
    assert min(times["bf16"]) < 0.9 * min(times["fp32"])
    assert P.decide(times)[0] == "fp32"


def test_a_win_within_the_margin_keeps_fp32():
    assert P.decide({"fp32": [1.0] * 4, "bf16": [0.93] * 4})[0] == "fp32"
    assert P.decide({"fp32": [1.0] * 4, "bf16": [0.93] * 4}, margin=0.05)[0] == "bf16"


def test_too_few_rounds_keep_fp32():
    precision, why = P.decide({"fp32": [1.0, 1.0], "bf16": [0.5, 0.5]})
    assert precision == "fp32" and f"{P.MIN_ROUNDS} needed" in why
    assert P.decide({"fp32": [], "bf16": []})[0] == "fp32"


def test_the_timing_stops_once_more_rounds_would_hardly_change_the_answer():
    assert P.settled({"fp32": [1.0, 1.0], "bf16": [1.2, 1.3]})  # bf16 no faster after 2 rounds
    assert not P.settled({"fp32": [1.0], "bf16": [1.2]})
    assert not P.settled({"fp32": [1.0, 1.0], "bf16": [0.5, 0.5]})  # a bf16 win needs MIN_ROUNDS
    assert P.settled({"fp32": [1.0, 1.0, 1.0], "bf16": [0.5, 0.5, 0.5]})  # and twice the margin to stop early
    assert not P.settled({"fp32": [1.0, 1.0, 1.0], "bf16": [0.85, 0.85, 0.85]})
