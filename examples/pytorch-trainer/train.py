"""Train one fnas child with PyTorch: the trial command of `fnas search --trial-command`.

    fnas search --task fashion-mnist-tiny --strategy fnas \
        --trial-command 'python3 train.py' --trial-code-dir examples/pytorch-trainer

fnas runs this once per child with FNAS_TRIAL_DIR set to the child's trial folder, which
holds trial.json (what to train) and model.py (the child as a torch.nn module, the same
module `fnas export` writes). This script builds the child, loads the knowledge pool's
warm start when trial.json names one, trains it on the task's images with the task's
recipe, and writes result.json (val_accuracy, images, weights, ...). The weights it
returns (model.state_dict() as safetensors) feed fnas's knowledge pool, so later
children can warm-start from what this one learned.

Data: the task's IDX folder (Fashion-MNIST and friends: train-images-idx3-ubyte[.gz]) or
an image-folder tree (train/<class>/*.png; needs Pillow). Replace `load_data` to train on
anything else: fnas only needs result.json.
"""

import gzip
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

TRIAL_DIR = os.environ["FNAS_TRIAL_DIR"]


def read_trial():
    with open(os.path.join(TRIAL_DIR, "trial.json")) as f:
        return json.load(f)


def read_idx(path):
    """An IDX file (plain or gzip) as a uint8 tensor of its dimensions."""
    for p in (path + ".gz", path):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                data = f.read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
            body = bytearray(data[4 + 4 * ndim:])
            return torch.frombuffer(body, dtype=torch.uint8).reshape(dims).clone()
    raise FileNotFoundError(f"{path}[.gz] not found")


def read_image_folder(root, channels):
    """train/<class>/* images as ([n, c, h, w] uint8, labels); classes in sorted order."""
    from PIL import Image  # only needed for image folders

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if file.startswith("."):
                continue
            img = Image.open(os.path.join(folder, file)).convert("L" if channels == 1 else "RGB")
            t = torch.tensor(bytearray(img.tobytes()), dtype=torch.uint8)
            t = t.reshape(img.height, img.width, channels).permute(2, 0, 1)
            images.append(t)
            labels.append(label)
    return images, torch.tensor(labels, dtype=torch.long)


def load_data(trial):
    """Train and validation tensors drawn from the task's training images with its seed
    (validation first, then training, disjoint), resized and normalised like fnas does."""
    task, inp = trial["task"], trial["input"]
    res, channels = inp["resolution"], inp["channels"]
    if task.get("images"):
        imgs, y = read_image_folder(os.path.join(task["images"], "train"), channels)
        x = torch.stack([
            F.interpolate(i[None].float(), size=(res, res), mode="bilinear",
                          align_corners=False, antialias=False)[0]
            for i in imgs
        ])
    else:
        d = task["data_dir"]
        x = read_idx(os.path.join(d, "train-images-idx3-ubyte")).float().unsqueeze(1)
        y = read_idx(os.path.join(d, "train-labels-idx1-ubyte")).long()
    # keep the task's classes, numbered as fnas numbers them
    class_map = trial["class_map"]
    remap = torch.full((256,), -1, dtype=torch.long)
    for new, old in enumerate(class_map):
        remap[old] = new
    keep = remap[y] >= 0
    x, y = x[keep], remap[y[keep]]
    g = torch.Generator().manual_seed(task["seed"])
    perm = torch.randperm(len(y), generator=g)
    nv, nt = task["val_images"], task["train_images"]
    val, train = perm[:nv], perm[nv:nv + nt]
    x = x / 255.0
    if x.shape[-1] != res or x.shape[-2] != res:
        x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=False)
    norm = task.get("normalize") or {"mean": 0.2860, "std": 0.3530}
    x = (x - norm["mean"]) / norm["std"]
    return (x[train], y[train]), (x[val], y[val])


def optimizer_of(task, net, lr):
    opt = task["optimizer"]
    wd = task.get("weight_decay", 0.0)
    if opt["kind"] == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr, betas=(opt.get("beta1", 0.9), opt.get("beta2", 0.999)),
                                eps=opt.get("epsilon", 1e-8), weight_decay=wd)
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=opt.get("momentum", 0.9),
                           nesterov=opt.get("nesterov", False), weight_decay=wd)


def accuracy(net, x, y, batch=500):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += (net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / max(1, len(y))


def write_safetensors(state, path):
    """A state dict as safetensors (f32 / i64), without the `safetensors` package."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        raw = raw_bytes(t)
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * ((8 - (len(head) + 8) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def raw_bytes(t):
    """A tensor's little-endian bytes (numpy when there, plain torch otherwise)."""
    try:
        return t.numpy().tobytes()
    except (ImportError, RuntimeError, TypeError):
        return bytes(t.reshape(-1).view(torch.uint8).tolist())


def main():
    trial = read_trial()
    task = trial["task"]
    torch.set_num_threads(max(1, int(trial.get("threads", 1))))
    torch.manual_seed(trial["seed"] & 0x7FFF_FFFF_FFFF_FFFF)
    sys.path.insert(0, TRIAL_DIR)
    import model  # the child's module, written by fnas into the trial folder

    net = model.ChildNet()
    if trial.get("init_weights"):
        net.load_state_dict(model.read_safetensors(trial["init_weights"]), strict=True)
    (xt, yt), (xv, yv) = load_data(trial)

    batch = min(task["batch_size"], len(yt))
    steps_per_epoch = max(1, len(yt) // batch)
    steps = max(1, round(trial["epochs"] * steps_per_epoch))
    lr = task["lr"] * trial.get("lr_scale", 1.0)
    min_lr = task.get("min_lr", 0.0) * trial.get("lr_scale", 1.0)
    warmup = round(trial.get("warmup_epochs", 0.0) * steps_per_epoch)
    opt = optimizer_of(task, net, lr)
    smoothing = task.get("label_smoothing") or 0.0
    g = torch.Generator().manual_seed(trial["seed"] & 0x7FFF_FFFF_FFFF_FFFF)

    started, step, images = time.time(), 0, 0
    net.train()
    while step < steps:
        perm = torch.randperm(len(yt), generator=g)
        for i in range(steps_per_epoch):
            if step >= steps:
                break
            if step < warmup:
                rate = lr * (step + 1) / warmup
            elif task.get("schedule", "cosine") == "cosine":
                t = (step - warmup) / max(1, steps - warmup)
                rate = min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t))
            else:
                rate = lr
            for group in opt.param_groups:
                group["lr"] = rate
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(net(xt[idx]), yt[idx], label_smoothing=smoothing)
            if not torch.isfinite(loss):
                sys.exit(f"loss diverged at step {step}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            images += len(idx)

    val = accuracy(net, xv, yv)
    weights = os.path.join(TRIAL_DIR, "weights.safetensors")
    write_safetensors(net.state_dict(), weights)
    result = {
        "val_accuracy": val,
        "images": images,
        "epochs": trial["epochs"],
        "params": sum(p.numel() for p in net.parameters()),
        "weights": "weights.safetensors",
        "train_seconds_torch": time.time() - started,
    }
    tmp = os.path.join(TRIAL_DIR, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(TRIAL_DIR, "result.json"))
    print(f"trial {trial['trial']}: val_accuracy {val:.4f} after {images} images")


if __name__ == "__main__":
    main()
