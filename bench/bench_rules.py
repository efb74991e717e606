"""Per-frame cost of features + rules + outputs (``TriggerProgram.step``) on real fly poses.

    .venv/bin/python bench/bench_rules.py [--repeats 5]

Prints the median and 99th percentile of one ``step`` for the paper's protocol (5
features, 1 rule, a pulse and a follow output) and for a heavier one (24 features,
12 rules, 4 outputs). The live loop's budget for this step is well under 0.1 ms.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rtpose.data.labels import class_names, load_labels, node_names, user_frames
from rtpose.paths import data_dir
from rtpose.poses import Poses
from rtpose.rules import TriggerProgram, TriggerSections

PX_PER_MM = 30.3
PAPER = {
    "features": {
        "head_to_abdomen": {"distance": ["male.head", "female.abdomen"]},
        "female_in_front_of_male": {"angle": "female.thorax", "relative_to": "male", "from": "thorax", "to": "head"},
        "male_behind_female": {"angle": "male.thorax", "relative_to": "female", "from": "thorax", "to": "head"},
        "thorax_distance": {"distance": ["male.thorax", "female.thorax"]},
        "male_speed": {"speed": "male.thorax"},
    },
    "rules": {"male_approach": "head_to_abdomen < 2 and abs(female_in_front_of_male) < 25 "
                               "and abs(male_behind_female) > 145"},
    "outputs": {
        "opto_led": {"channel": "ao0", "pulse": {"rule": "male_approach", "volts": 5, "duration_ms": 25,
                                                 "refractory_ms": 500}},
        "distance_signal": {"channel": "ao1", "follow": {"feature": "thorax_distance", "from": [0, 20], "to": [1, 5]}},
    },
}


def heavy_protocol(nodes: list[str]) -> dict:
    features, rules, outputs = {}, {}, {}
    for i, node in enumerate(nodes[:6]):
        features[f"d{i}"] = {"distance": [f"male.{node}", f"female.{node}"]}
        tip = node if node != "thorax" else "head"
        features[f"h{i}"] = {"heading": "male" if i % 2 else "female", "from": "thorax", "to": tip}
        features[f"a{i}"] = {"angle": f"female.{node}", "relative_to": "male", "from": "thorax", "to": "head"}
        features[f"s{i}"] = {"speed": f"male.{node}"}
    for i in range(12):
        j = i % 6
        rules[f"r{i}"] = f"(d{j} < {1 + i / 4} and abs(a{j}) < 30) or not (s{j} <= 5 or max(h{j}, a{j}) > 170)"
    for i in range(4):
        outputs[f"o{i}"] = ({"channel": f"ao{i}", "pulse": {"rule": f"r{i}", "volts": 5, "duration_ms": 10,
                                                            "refractory_ms": 100}} if i % 2 else
                            {"channel": f"ao{i}", "follow": {"feature": f"d{i}", "from": [0, 10], "to": [0, 5]}})
    return {"features": features, "rules": rules, "outputs": outputs}


def measure(sections: dict, nodes, classes, poses: list[Poses], repeats: int) -> np.ndarray:
    program = TriggerProgram(TriggerSections.model_validate(sections), nodes, classes, PX_PER_MM)
    costs = []
    t = 0.0
    for _ in range(repeats):
        for p in poses:
            t += 0.01
            start = time.perf_counter()
            program.step(t, p)
            costs.append(time.perf_counter() - start)
    return np.array(costs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = data_dir() / "flies13" / "clip.trainval.slp"
    labels = load_labels(path)
    nodes, classes = node_names(labels), class_names(labels)
    poses = [Poses(f.points, np.ones(f.points.shape[:2], np.float32), np.ones(len(f.points), np.float32), f.classes,
                   np.full((len(f.points), len(classes)), 0.5, np.float32)) for f in user_frames(labels, path)]
    for name, sections in [("paper protocol", PAPER), ("heavy protocol", heavy_protocol(nodes))]:
        us = measure(sections, nodes, classes, poses, args.repeats)
        print(f"{name:15s} ({len(sections['features'])} features, {len(sections['rules'])} rules, "
              f"{len(sections['outputs'])} outputs): step median {np.median(us):.1f} us, "
              f"p99 {np.percentile(us, 99):.1f} us over {us.size} frames")


if __name__ == "__main__":
    main()
