"""The resnas zoo through timm: create_model, parameter counts, features_only, and a short fine-tuning loop.

    python examples/zoo_timm.py                                          # ResNet-20 on digits, 300 steps
    python examples/zoo_timm.py --model "depth=8,widths=4-8-16" --steps 30   # seconds
    python examples/zoo_timm.py --model preact_resnet110 --steps 100     # any registered name or spec string

`import resnas` registers the networks with timm, so everything below is plain timm and PyTorch. The
fine-tuning loop trains from scratch here; start it from trained weights with
timm.create_model("local-dir:FOLDER", pretrained=True) on a folder written by `resnas train` or `resnas export`.
"""

from __future__ import annotations

import argparse

import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

import resnas  # noqa: F401  (registers preact_resnet110/164/1001, original_*, preact_resnet18..200, resnas_spec)
from resnas.data import load_data


def create(name: str, **kwargs) -> torch.nn.Module:
    """A registered name (preact_resnet164) or any ArchSpec string (depth=20,act=preact,...)."""
    if "=" in name:
        return timm.create_model("resnas_spec", spec=name, **kwargs)
    return timm.create_model(name, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="depth=20,act=preact", help="network to fine-tune on digits")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps of batch --batch-size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    # 1. The paper's networks by name.
    print("registered:", ", ".join(timm.list_models("preact_resnet*")))
    model = timm.create_model("preact_resnet164")
    params = sum(p.numel() for p in model.parameters())
    print(f"preact_resnet164: {params:,} params, input {model.pretrained_cfg['input_size']}, "
          f"{model.num_features} features -> {model.num_classes} classes")

    # 2. As a backbone: one feature map per stage.
    backbone = timm.create_model("preact_resnet164", features_only=True).eval()
    print("feature_info:", list(zip(backbone.feature_info.module_name(), backbone.feature_info.channels(),
                                    backbone.feature_info.reduction())))
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 32, 32))
    print("feature shapes:", [tuple(f.shape[1:]) for f in features])

    # 3. Fine-tune a small network on the embedded digits (1-channel 8x8 images, 10 classes).
    data = load_data("digits")
    net = create(args.model, in_chans=data.input_size[0], num_classes=data.num_classes)
    print(f"fine-tuning {net.spec} ({sum(p.numel() for p in net.parameters()):,} params)")
    # timm's optimizer factory: SGD (Nesterov) with no weight decay on BN and bias parameters
    optimizer = create_optimizer_v2(net, "sgd", lr=args.lr, momentum=0.9, weight_decay=1e-4)
    loader = data.loader("train", args.batch_size, generator=torch.Generator().manual_seed(args.seed))
    losses = []
    net.train()
    while len(losses) < args.steps:
        for x, y in loader:  # normalized, augmented (1-pixel shifts) batches
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) % max(1, args.steps // 5) == 0:
                print(f"step {len(losses)}: loss {loss.item():.4f}", flush=True)
            if len(losses) == args.steps:
                break
    k = max(1, min(10, args.steps // 3))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"loss: {first:.4f} (mean of the first {k} steps) -> {last:.4f} (mean of the last {k} steps)")

    net.eval()
    wrong = total = 0
    with torch.no_grad():
        for x, y in data.loader("val", 256):
            wrong += (net(x).argmax(1) != y).sum().item()
            total += len(y)
    print(f"val error: {wrong / total:.4f} on {total} images")


if __name__ == "__main__":
    main()
