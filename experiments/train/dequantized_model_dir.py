"""A model directory (as `rtpose train` writes) from an export: its fp32 graph's weights, or an int8 export's dequantised.

Usage: python experiments/train/dequantized_model_dir.py OLD_EXPORT_DIR MODEL_DIR [TRAINING_INFO.json]

The weights are the export's int8 weights dequantised (per-channel scale times int8
value; layers the export kept in fp32 as they are), loaded into the networks described
by its rtpose.json; each BatchNorm is an identity (weight 1, mean 0, variance 1 - eps)
whose bias is the folded convolution bias, so `rtpose export MODEL_DIR` rebuilds the
same folded graph. TRAINING_INFO.json adds to model.json what the old model card said
about the training (model_card.py reads it). Used once, in issue 9, to move the shipped
flies13 model (format 1: an int8 model.onnx only) to export format 2:

    git show 9bb8087:models/flies13/model.onnx > /tmp/old/model.onnx   # and rtpose.json
    python experiments/train/dequantized_model_dir.py /tmp/old runs/flies13_dequantized info.json
    make model-export MODEL_RUN=runs/flies13_dequantized

Used again in issue 10 to re-export the shipped flies13 model (format 2: its fp32
``model.onnx`` holds the weights exactly) with ``distinct_nodes``, an inference option
added to its recipe after it was trained; see ``experiments/train/flies13_reexport.sh``.
"""
import json
import os
import sys
from pathlib import Path
import torch
import yaml
from rtpose.engine.torch_cuda import pipeline_from_export
from rtpose.export.spec import ExportSpec
from rtpose.nn.models import centroid_arch_from_dict, instance_arch_from_dict

src, out = Path(sys.argv[1]), Path(sys.argv[2])
extra = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}
spec = ExportSpec.load(src)
folded = pipeline_from_export(src, spec).state_dict()
for net, build in (("centroid", centroid_arch_from_dict), ("instance", instance_arch_from_dict)):
    module = build(spec.architecture[net]).build().eval()
    sd = module.state_dict()
    new = {}
    # conv weight keys: the folded one has same names; BN following conv i is at index i+1
    for k, v in sd.items():
        fk = f"{net}.{k}"
        if fk in folded and folded[fk].shape == v.shape:
            new[k] = folded[fk].clone()
    for name, mod in module.named_modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            prefix, idx = name.rsplit(".", 1)
            conv_bias = folded[f"{net}.{prefix}.{int(idx) - 1}.bias"]
            new[f"{name}.weight"] = torch.ones_like(mod.weight)
            new[f"{name}.bias"] = conv_bias.clone()
            new[f"{name}.running_mean"] = torch.zeros_like(mod.running_mean)
            new[f"{name}.running_var"] = torch.full_like(mod.running_var, 1 - mod.eps)
            new[f"{name}.num_batches_tracked"] = torch.tensor(0)
    missing = [k for k in sd if k not in new]
    assert not missing, missing[:5]
    module.load_state_dict(new)
    (out / net).mkdir(parents=True, exist_ok=True)
    torch.save({"arch": spec.architecture[net], "state_dict": new, "kind": net}, out / net / "best.pt")
info = {k: getattr(spec, k) for k in ("node_names", "class_names", "anchor_part", "frame_height", "frame_width",
        "input_scale", "crop_size", "centroid_output_stride", "instance_output_stride", "centroid_threshold",
        "point_threshold", "refinement", "max_instances", "config_hash", "animal_size_px")}
info["edges"] = [list(e) for e in spec.edges]
info["labels"] = str(Path(os.environ.get("RTPOSE_DATA", "../shared/data")) / "flies13" / "clip.trainval.slp")
info.update(extra)
(out / "model.json").write_text(json.dumps(info, indent=1))
cfg = {"data": {"labels": info["labels"], "train_frames": "0-999:10, 1000-1149", "val_frames": "1150-1199"}}
(out / "config.yaml").write_text(yaml.safe_dump(cfg))
print("written", out)
