"""A child network exported by `fnas export`: standalone, needs only PyTorch.

    import model
    net = model.load("weights.safetensors")   # eval mode, weights loaded strictly
    logits = net(x)                           # x: [batch, channels, R, R], preprocessed

The network (bias-free convs + BatchNorm, squeeze-excitation with biased 1x1 convs,
identity / projection skips, 1x1 head conv + BN + ReLU, global average pool, linear
classifier) is rebuilt from PLAN, the layer plan fnas trained (also in plan.json).
Inputs must be preprocessed as preprocess.json says (see `preprocess`).
"""

import json
import os
import struct

import torch
from torch import nn

PLAN = json.loads(__PLAN_JSON__)

HERE = os.path.dirname(os.path.abspath(__file__))


def conv_bn(cin, cout, k, stride, groups=1):
    """Bias-free kxk conv (padding k/2) followed by BatchNorm (`conv.*`, `bn.*`)."""
    m = nn.Module()
    m.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    m.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
    return m


def run_conv_bn(m, x):
    return m.bn(m.conv(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


def op_kind(op):
    """The plan's op: "conv", "dw_sep", or {"mb_conv": {"expansion": e}}."""
    if isinstance(op, str):
        return op, None
    ((name, body),) = op.items()
    return name, body.get("expansion")


class Layer(nn.Module):
    """Parts in op order: expand+ReLU, conv+ReLU, dw+ReLU, SE, pw, project, residual."""

    def __init__(self, lp):
        super().__init__()
        kind, e = op_kind(lp["op"])
        cin, cout, k, s = lp["cin"], lp["cout"], lp["kernel"], lp["stride"]
        self.expand = self.conv = self.dw = self.pw = self.project = self.skip = None
        if kind == "conv":
            hidden = cout
            self.conv = conv_bn(cin, cout, k, s)
        elif kind == "dw_sep":
            hidden = cin
            self.dw = conv_bn(cin, cin, k, s, groups=cin)
            self.pw = conv_bn(cin, cout, 1, 1)
        elif kind == "mb_conv":
            hidden = cin * e
            self.expand = conv_bn(cin, hidden, 1, 1)
            self.dw = conv_bn(hidden, hidden, k, s, groups=hidden)
            self.project = conv_bn(hidden, cout, 1, 1)
        else:
            raise ValueError(f"unknown op {lp['op']!r}")
        se = lp.get("se")
        self.se = None
        if se is not None:
            assert se["channels"] == hidden, (se, hidden)
            self.se = SqueezeExcite(se["channels"], se["reduced"])
        if lp["skip"] == "project":
            self.skip = conv_bn(cin, cout, 1, s)
        self.identity = lp["skip"] == "identity"

    def forward(self, x):
        h = x
        for part in (self.expand, self.conv, self.dw):
            if part is not None:
                h = torch.relu(run_conv_bn(part, h))
        if self.se is not None:
            h = self.se(h)
        for part in (self.pw, self.project):
            if part is not None:
                h = run_conv_bn(part, h)
        if self.identity:
            return h + x
        if self.skip is not None:
            return h + run_conv_bn(self.skip, x)
        return h


class ChildNet(nn.Module):
    def __init__(self, plan=PLAN):
        super().__init__()
        st, hd = plan["stem"], plan["head"]
        self.stem = conv_bn(st["cin"], st["cout"], st["kernel"], st["stride"])
        self.blocks = nn.ModuleList()
        for b in plan["blocks"]:
            blk = nn.Module()
            blk.layers = nn.ModuleList(Layer(lp) for lp in b["layers"])
            self.blocks.append(blk)
        self.head = conv_bn(hd["cin"], hd["cout"], 1, 1)
        self.classifier = nn.Linear(hd["cout"], plan["classes"], bias=True)

    def forward(self, x):
        h = torch.relu(run_conv_bn(self.stem, x))
        for blk in self.blocks:
            for layer in blk.layers:
                h = layer(h)
        h = torch.relu(run_conv_bn(self.head, h))
        return self.classifier(h.mean(dim=(2, 3)))


_DTYPES = {"F32": torch.float32, "I64": torch.int64}


def read_safetensors(path):
    """A safetensors file as a state dict (no `safetensors` package needed)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    state = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        buf = bytearray(body[begin:end])
        tensor = torch.frombuffer(buf, dtype=_DTYPES[t["dtype"]]) if buf else \
            torch.empty(0, dtype=_DTYPES[t["dtype"]])
        state[name] = tensor.reshape(t["shape"]).clone()
    return state


def load(weights=os.path.join(HERE, "weights.safetensors")):
    """The trained network in eval mode (BatchNorm uses its running statistics)."""
    net = ChildNet()
    net.load_state_dict(read_safetensors(weights), strict=True)
    return net.eval()


def preprocess(images, config=os.path.join(HERE, "preprocess.json")):
    """uint8 images [batch, channels, H, W] (or [batch, H, W]) to the network's input.

    preprocess.json's `color` says what the channels are: `gray` (one plane; convert
    colour images as PIL's `convert("L")` does) or `rgb` (R, G, B planes, alpha dropped).
    """
    with open(config) as f:
        p = json.load(f)
    x = images.to(torch.float32) * p["pixel_scale"]
    if x.dim() == 3:
        x = x.unsqueeze(1)
    r = p["resolution"]
    if tuple(x.shape[2:]) != (r, r):
        mode = "bilinear" if p["resize"] == "bilinear" else "nearest-exact"
        kw = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
        x = torch.nn.functional.interpolate(x, size=(r, r), mode=mode, **kw)
    mean = torch.tensor(p["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(p["std"]).view(1, -1, 1, 1)
    return (x - mean) / std
