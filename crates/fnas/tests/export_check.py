"""Runs an `fnas export` folder in PyTorch (used by tests/export.rs).

usage: export_check.py DIR N LOGITS_OUT ONNX_OUT [DATA_DIR]

Imports DIR/model.py, loads DIR/weights.safetensors strictly, preprocesses the first N
t10k Fashion-MNIST images of the exported task's classes as DIR/preprocess.json says,
writes the eval-mode logits as JSON to LOGITS_OUT, and exports the model to ONNX_OUT
with torch.onnx.export.
"""

import gzip
import importlib.util
import json
import os
import sys

import numpy as np
import torch


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main(out_dir, n, logits_out, onnx_out, data_dir="/usr/share/datasets/fashion-mnist"):
    n = int(n)
    spec = importlib.util.spec_from_file_location("model", os.path.join(out_dir, "model.py"))
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    net = model.ChildNet()
    state = model.read_safetensors(os.path.join(out_dir, "weights.safetensors"))
    net.load_state_dict(state, strict=True)
    net.eval()

    with open(os.path.join(out_dir, "preprocess.json")) as f:
        p = json.load(f)
    images = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    keep = [i for i in range(len(labels)) if labels[i] in p["class_map"]][:n]
    x = torch.from_numpy(images[keep].astype(np.float32)).unsqueeze(1)
    assert list(x.shape[2:]) == p["source_size"], (x.shape, p["source_size"])
    x = x * np.float32(p["pixel_scale"])
    r = p["resolution"]
    if list(x.shape[2:]) != [r, r]:
        if p["resize"] == "bilinear":
            x = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear",
                                                align_corners=False, antialias=False)
        else:
            x = torch.nn.functional.interpolate(x, size=(r, r), mode="nearest-exact")
    mean = torch.tensor(p["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(p["std"], dtype=torch.float32).view(1, -1, 1, 1)
    x = (x - mean) / std
    assert x.shape[1] == p["channels"]

    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (len(keep), p["classes"]), logits.shape
    with open(logits_out, "w") as f:
        json.dump(logits.tolist(), f)

    # the helpers model.py offers its users give the same
    with torch.no_grad():
        again = model.load()(model.preprocess(torch.from_numpy(images[keep].copy())))
    assert torch.allclose(again, logits, rtol=0, atol=1e-6), (again - logits).abs().max()

    torch.onnx.export(net, x[:1], onnx_out, input_names=["images"], output_names=["logits"])
    print(f"torch {torch.__version__}: {len(keep)} images, onnx {os.path.getsize(onnx_out)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
