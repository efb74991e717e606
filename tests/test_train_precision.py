"""precision: auto on the CPU at hand: timed where bf16 exists, fp32 where not."""

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
    assert choice.precision in ("fp32", "bf16") and set(choice.step_ms) == {"fp32", "bf16"}
    slower = max(choice.step_ms, key=choice.step_ms.get)
    if choice.step_ms[slower] > choice.step_ms[min(choice.step_ms, key=choice.step_ms.get)] / 0.95:
        assert choice.precision != slower
