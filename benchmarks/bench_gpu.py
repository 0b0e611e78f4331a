"""The GPU rows in one run (under 8 minutes on one H100 or H200), printed and written to a Markdown report.

Every row times training steps (forward, backward, SGD step with momentum) on synthetic tensors made on
the device: warm-up steps first (cudnn autotuning, allocator, compilation), then windows of steps timed
with CUDA events (the wall clock on a CPU). A row that compares two settings times them in alternation
(A B, B A, A B, ...) so both see the same machine state, and reports the median of each side's windows.

1. precision: `preact_resnet164`, CIFAR-shaped (batch 128, 32 px): bf16 autocast + channels_last vs fp32
   (TF32 allowed unless --no-tf32): the speed-up of the fast setting;
2. timm: `preact_resnet50` vs timm's `resnetv2_50` at 224 px, batch 128, both bf16 + channels_last;
3. mfu: `preact_resnet200` training at 224 px, bf16 + channels_last (batch 128, halved on out of memory):
   achieved FLOP/s = 3 x 2 x forward MACs per image (resnas.network.count_macs) x images/s, against the
   card's dense bf16 peak (PEAK_TFLOPS below, or --peak-tflops), with the peak memory;
4. loader: `preact_resnet164` trained by resnas.train.train_epoch from the on-GPU CIFAR loader vs one
   synthetic batch (the logic of benchmarks/gpu_loader.py);
5. compile: torch.compile vs eager for `preact_resnet164`, bf16 + channels_last; the compile time is
   reported and kept out of the throughput.

Each row has a step count and a time cap (a hard one: a row past it is stopped and reported as timed
out), and all rows share --budget (420 s, counted from the end of the imports); a row that fails (out of
memory, a compile error, its cap) is reported with its error and the run goes on. The report is
rewritten after every row; the exit code is 1 when a row failed.

    python benchmarks/bench_gpu.py                                  # one GPU: every row, at most 7.5 minutes
    bash benchmarks/run_gpu.sh                                      # the same, report in ${OUT:-benchmarks}
    python benchmarks/bench_gpu.py --rows mfu --mfu-batch 96        # some rows, other settings
    python benchmarks/bench_gpu.py --device cpu --quick --peak-tflops 0.1 --report /tmp/r.md   # CPU smoke run
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import os
import platform
import re
import shlex
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
try:
    import resnas
except ImportError:  # a checkout that is not pip-installed: use it from its root
    sys.path.insert(0, str(HERE.parent))
    import resnas

from resnas.network import count_macs  # noqa: E402

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOP/s, the first pattern found in
# torch.cuda.get_device_name() wins. NVIDIA's datasheets print the sparse figure; dense is half of it.
PEAK_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"gh200", 989.0, "GH200 (H100 SXM5 GPU): NVIDIA GH200 datasheet, 1,979 sparse"),
    (r"h200.*nvl", 835.0, "H200 NVL: NVIDIA H200 datasheet, 1,671 sparse"),
    (r"h200", 989.0, "H200 SXM: NVIDIA H200 datasheet, 1,979 sparse"),
    (r"h100.*nvl", 835.0, "H100 NVL: NVIDIA H100 datasheet, 1,671 sparse"),
    (r"h100.*pcie", 756.0, "H100 PCIe: NVIDIA H100 datasheet, 1,513 sparse"),
    (r"h100", 989.0, "H100 SXM5: NVIDIA H100 datasheet, 1,979 sparse"),
    (r"a100", 312.0, "A100 (SXM4 and PCIe): NVIDIA A100 datasheet, 624 sparse"),
    (r"b200", 2250.0, "B200: NVIDIA HGX B200 specifications, 4.5 PFLOP/s sparse"),
    (r"l40s", 362.0, "L40S: NVIDIA L40S datasheet, 733 sparse"),
    (r"\bl4\b", 121.0, "L4: NVIDIA L4 datasheet, 242 sparse"),
)

ROW_KEYS = ("precision", "timm", "mfu", "loader", "compile")  # the order they run in: compile, the slowest, last


@dataclass
class Plan:
    """How long one row runs: timed windows of ``steps`` steps, ``repeats`` per side, after ``warmup``
    steps per side, within ``cap`` seconds."""

    steps: int
    repeats: int
    warmup: int
    cap: float


# per row: (GPU plan, --quick plan); --steps / --repeats / --warmup override them
PLANS = {
    "precision": (Plan(20, 7, 10, 60), Plan(1, 1, 1, 60)),
    "timm": (Plan(10, 7, 10, 60), Plan(1, 1, 1, 60)),
    "mfu": (Plan(10, 5, 5, 90), Plan(1, 1, 1, 60)),
    "loader": (Plan(50, 3, 20, 50), Plan(2, 2, 1, 60)),
    "compile": (Plan(20, 7, 10, 240), Plan(1, 2, 1, 90)),
}
TINY_SPEC = "depth=11,unit=bottleneck,widths=8-16-32"  # the --quick model of the loader and compile rows
MIN_CAP = 10.0  # seconds: a row given less by what is left of --budget is skipped
WARMUP_SHARE = 0.4  # warm-up stops early once it has used this share of the row's cap


@dataclass
class Row:
    """One line of the report: A (measured) against B (reference), or an error."""

    key: str
    what: str = ""
    unit: str = "img/s"
    a: float | None = None
    b: float | None = None
    b_text: str | None = None  # shown when there is no reference number (no known peak)
    ratio: float | None = None
    peak_mem: str = "-"
    details: list[str] = field(default_factory=list)
    status: str = "not run"  # ok | failed | timed out | skipped | interrupted | not run
    error: str = ""
    seconds: float = 0.0


class RowTimeout(Exception):
    """Raised in the main thread by SIGALRM when a row passes its cap."""


class Ctx:
    """What a row needs: the options, the device, its clock and the progress log."""

    def __init__(self, args: argparse.Namespace, device: torch.device, start: float):
        self.args, self.device, self.start = args, device, start
        self.cuda = device.type == "cuda"
        self.key, self.phase, self.row_start, self.cap = "", "", start, 0.0
        self.windows = 0  # timed windows per side of the last measure()

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {msg}", flush=True)

    def used(self) -> float:
        return time.perf_counter() - self.row_start

    def left(self) -> float:
        return self.cap - self.used()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def window(self, run: Callable[[int], object], steps: int) -> float:
        """Seconds taken by ``run(steps)``: between two CUDA events on a GPU, by the wall clock on a CPU."""
        if self.cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.sync()
            begin.record()
            run(steps)
            end.record()
            end.synchronize()
            return begin.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        run(steps)
        return time.perf_counter() - t0


# ---- the training step -------------------------------------------------------------------------------
def create(name: str) -> nn.Module:
    """A registered timm / resnas model by name, or any ArchSpec string through ``resnas_spec``."""
    return timm.create_model("resnas_spec", spec=name) if "=" in name else timm.create_model(name)


class Trainer:
    """Train steps of one model on one synthetic batch made on the device.

    ``fast``: bf16 autocast with the model and the batch in channels_last; otherwise fp32, contiguous.
    ``runner(net)`` steps through ``net`` (e.g. the torch.compile of the model) with the same optimizer.
    """

    def __init__(self, model: nn.Module, batch: int, size: int, device: torch.device, fast: bool):
        fmt = torch.channels_last if fast else torch.contiguous_format
        self.model = model.to(device=device, memory_format=fmt).train()
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, model.num_classes, (batch,), device=device)
        self.device, self.fast = device, fast

    def runner(self, net: nn.Module | None = None) -> Callable[[int], None]:
        net = self.model if net is None else net
        x, y, opt, device, fast = self.x, self.y, self.opt, self.device, self.fast

        def run(steps: int) -> None:
            for _ in range(steps):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                    loss = F.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        return run


def measure(ctx: Ctx, sides: dict[str, Callable[[int], object]], plan: Plan, images: int) -> dict[str, float]:
    """Median images/s of each side: warm-up, then windows of ``plan.steps`` steps, interleaved A B, B A, ...

    Warm-up stops early past WARMUP_SHARE of the cap (after at least one step); windows stop once
    another round would not fit in the cap (after at least one round).
    """
    for name, run in sides.items():
        ctx.phase = f"warm-up of {name}"
        run(1)
        if plan.warmup > 1 and ctx.used() < WARMUP_SHARE * ctx.cap:
            run(plan.warmup - 1)
        ctx.sync()
    names = list(sides)
    rates: dict[str, list[float]] = {name: [] for name in names}
    ctx.windows = 0
    for r in range(plan.repeats):
        t0 = time.perf_counter()
        for name in names if r % 2 == 0 else names[::-1]:
            ctx.phase = f"timing {name}"
            rates[name].append(images * plan.steps / ctx.window(sides[name], plan.steps))
        ctx.windows = r + 1
        if r + 1 < plan.repeats and ctx.left() < 1.5 * (time.perf_counter() - t0):
            ctx.log(f"{ctx.key}: {r + 1} of {plan.repeats} windows, the next would pass the {ctx.cap:.0f} s cap")
            break
    return {name: statistics.median(v) for name, v in rates.items()}


def timing_note(plan: Plan, ctx: Ctx, sides: int = 2) -> str:
    clock = "CUDA events" if ctx.cuda else "wall clock"
    cut = "" if ctx.windows == plan.repeats else f", cut from {plan.repeats} by the cap"
    return (f"median window of {ctx.windows} x {plan.steps} steps per side{' (interleaved)' if sides > 1 else ''}"
            f"{cut}, {clock}, after {plan.warmup} warm-up steps")


# ---- the rows ---------------------------------------------------------------------------------------
def row_precision(ctx: Ctx, row: Row, plan: Plan) -> None:
    a = ctx.args
    tf32 = "TF32 allowed" if a.tf32 else "TF32 off"
    row.what = (f"`preact_resnet164`, {a.cifar_size} px, batch {a.batch}: bf16 autocast + channels_last (A) "
                f"vs fp32, {tf32} (B); ratio = speed-up")
    ctx.phase = "build"
    fp32 = create("preact_resnet164")
    bf16 = copy.deepcopy(fp32)
    sides = {"bf16+channels_last": Trainer(bf16, a.batch, a.cifar_size, ctx.device, fast=True).runner(),
             "fp32": Trainer(fp32, a.batch, a.cifar_size, ctx.device, fast=False).runner()}
    rate = measure(ctx, sides, plan, a.batch)
    row.a, row.b = rate["bf16+channels_last"], rate["fp32"]
    row.ratio = row.a / row.b
    row.details.append(timing_note(plan, ctx))


def row_timm(ctx: Ctx, row: Row, plan: Plan) -> None:
    a = ctx.args
    row.what = (f"`preact_resnet50` (A) vs timm `resnetv2_50` (B), {a.size} px, batch {a.imagenet_batch}, "
                "both bf16 + channels_last; ratio = resnas / timm")
    ctx.phase = "build"
    sides = {name: Trainer(create(name), a.imagenet_batch, a.size, ctx.device, fast=True).runner()
             for name in ("preact_resnet50", "resnetv2_50")}
    rate = measure(ctx, sides, plan, a.imagenet_batch)
    row.a, row.b = rate["preact_resnet50"], rate["resnetv2_50"]
    row.ratio = row.a / row.b
    row.details.append(timing_note(plan, ctx))


def row_mfu(ctx: Ctx, row: Row, plan: Plan) -> None:
    a = ctx.args
    row.unit = "TFLOP/s"
    row.what = (f"`preact_resnet200` training, {a.size} px, bf16 + channels_last: achieved (A) vs peak (B) "
                "bf16 TFLOP/s; ratio = MFU")
    ctx.phase = "build"
    model = create("preact_resnet200").to(ctx.device)
    ctx.phase = "count MACs"
    macs = count_macs(model, (3, a.size, a.size))
    batch = a.mfu_batch
    while True:  # the largest batch from --mfu-batch down that fits, halving on out of memory
        ctx.phase = f"first step at batch {batch}"
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        run = Trainer(model, batch, a.size, ctx.device, fast=True).runner()
        try:
            run(1)
            break
        except torch.cuda.OutOfMemoryError:
            pass
        # out of memory; here, outside the except block, the traceback no longer holds the step's tensors
        run = None
        model.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        row.details.append(f"out of memory at batch {batch}")
        ctx.log(f"mfu: out of memory at batch {batch}")
        if batch // 2 < a.mfu_min_batch:
            raise torch.cuda.OutOfMemoryError(f"out of memory down to batch {batch} (--mfu-min-batch)")
        batch //= 2
    row.what = row.what.replace("training,", f"training, batch {batch},")
    rate = measure(ctx, {"preact_resnet200": run}, plan, batch)["preact_resnet200"]
    flops = 3 * 2 * macs * rate
    row.a = flops / 1e12
    peak, source = peak_tflops(ctx)
    if peak is None:
        row.b_text = source
    else:
        row.b, row.ratio = peak, row.a / peak
        row.details.append(f"peak: {source}")
    row.details[:0] = [f"{rate:,.1f} img/s at batch {batch}",
                       f"{macs / 1e9:.2f} GMACs per image forward (count_macs), 6 x MACs FLOP per trained image",
                       timing_note(plan, ctx, sides=1)]


def peak_tflops(ctx: Ctx) -> tuple[float | None, str]:
    """The peak to divide by and where it comes from, or (None, why there is none)."""
    if ctx.args.peak_tflops is not None:
        return ctx.args.peak_tflops, f"{ctx.args.peak_tflops:g} TFLOP/s from --peak-tflops"
    if not ctx.cuda:
        return None, "no peak for cpu (give --peak-tflops)"
    name = torch.cuda.get_device_name(ctx.device)
    peak, source = lookup_peak(name)
    if peak is None:
        return None, f"no peak known for {name} (give --peak-tflops)"
    return peak, f"{peak:g} TFLOP/s dense bf16 ({source})"


def lookup_peak(device_name: str) -> tuple[float | None, str]:
    """Dense bf16 TFLOP/s of a card from its torch.cuda.get_device_name(), from PEAK_TFLOPS."""
    if "mig" in device_name.lower().split():
        return None, ""  # a MIG slice has a fraction of the card's peak
    for pattern, peak, source in PEAK_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak, source
    return None, ""


def row_loader(ctx: Ctx, row: Row, plan: Plan) -> None:
    from accelerate import Accelerator

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import gpu_loader  # the on-GPU CIFAR loader benchmark, whose data and batch iteration this row reuses

    from resnas.recipe import Recipe
    from resnas.train import make_scheduler, train_epoch

    a = ctx.args
    row.what = (f"`{a.loader_model}`, batch {a.batch}, trained by resnas.train.train_epoch (bf16 through "
                "Accelerate, channels_last): on-GPU CIFAR loader (A) vs one synthetic batch (B); goal >= 0.95")
    ctx.phase = "build"
    accelerator = Accelerator(cpu=not ctx.cuda, mixed_precision="bf16")
    data = gpu_loader.cifar_shaped(a.loader_images)
    model = create(a.loader_model).to(memory_format=torch.channels_last)
    recipe = Recipe(batch_size=a.batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    loader = data.loader("train", a.batch, device=accelerator.device, generator=torch.Generator().manual_seed(0))
    model, prepared_opt, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = make_scheduler(optimizer, recipe, len(loader), epochs=1000)
    x, y = next(iter(loader))
    batch = [(x.clone(), y.clone())]

    def real(steps: int) -> None:
        train_epoch(accelerator, model, gpu_loader.first(loader, steps), prepared_opt, scheduler, 1e9)

    def synthetic(steps: int) -> None:
        train_epoch(accelerator, model, batch * steps, prepared_opt, scheduler, 1e9)

    rate = measure(ctx, {"on-GPU loader": real, "synthetic batch": synthetic}, plan, a.batch)
    row.a, row.b = rate["on-GPU loader"], rate["synthetic batch"]
    row.ratio = row.a / row.b
    row.details += [f"{a.loader_images:,} random CIFAR-shaped images on the device, crop + flip there",
                    timing_note(plan, ctx)]


def row_compile(ctx: Ctx, row: Row, plan: Plan) -> None:
    a = ctx.args
    mode = a.compile_mode or "default"
    row.what = (f"`{a.compile_model}`, {a.cifar_size} px, batch {a.batch}, bf16 + channels_last: "
                f"torch.compile (backend {a.compile_backend}, mode {mode}) (A) vs eager (B); ratio = speed-up")
    import torch._dynamo as dynamo

    ctx.phase = "build"
    dynamo.reset()
    trainer = Trainer(create(a.compile_model), a.batch, a.cifar_size, ctx.device, fast=True)
    compiled = torch.compile(trainer.model, backend=a.compile_backend, mode=a.compile_mode)
    sides = {"compiled": trainer.runner(compiled), "eager": trainer.runner()}
    ctx.phase = "compile"
    ctx.log(f"compile: compiling {a.compile_model} (backend {a.compile_backend})")
    t0 = time.perf_counter()
    sides["compiled"](1)
    ctx.sync()
    compile_s = time.perf_counter() - t0
    ctx.log(f"compile: compiled in {compile_s:.1f} s (with the first step)")
    row.details.append(f"compile + first step {compile_s:.1f} s, not in the throughput")
    rate = measure(ctx, sides, plan, a.batch)
    row.a, row.b = rate["compiled"], rate["eager"]
    row.ratio = row.a / row.b
    row.details.append(timing_note(plan, ctx))


ROW_FNS = {"precision": row_precision, "timm": row_timm, "mfu": row_mfu, "loader": row_loader,
           "compile": row_compile}


# ---- running the rows --------------------------------------------------------------------------------
@contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Raise RowTimeout in the main thread after ``seconds`` (where SIGALRM exists)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise RowTimeout(f"passed its {seconds:.0f} s cap")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_row(ctx: Ctx, row: Row, plan: Plan) -> None:
    ctx.key, ctx.phase, ctx.cap, ctx.row_start = row.key, "start", plan.cap, time.perf_counter()
    ctx.log(f"{row.key}: start (cap {plan.cap:.0f} s, {plan.repeats} x {plan.steps} steps, {plan.warmup} warm-up)")
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    try:
        with hard_cap(plan.cap):
            ROW_FNS[row.key](ctx, row, plan)
        row.status = "ok"
    except Exception as e:  # recorded in the report; the next row runs
        timed_out = isinstance(e, RowTimeout) or ctx.used() >= plan.cap
        row.status = "timed out" if timed_out else "failed"
        first = (str(e).strip().splitlines() or [""])[0][:300]
        row.error = (f"passed its {plan.cap:.0f} s cap during {ctx.phase}" if timed_out
                     else f"{type(e).__name__} during {ctx.phase}: {first}")
        if not timed_out:
            traceback.print_exc()
    row.seconds = ctx.used()
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        row.peak_mem = f"{torch.cuda.max_memory_allocated(ctx.device) / 2**30:.1f} GiB"
        if row.key == "mfu":
            row.details.append(f"peak memory {row.peak_mem} allocated, "
                               f"{torch.cuda.max_memory_reserved(ctx.device) / 2**30:.1f} GiB reserved "
                               f"of {props.total_memory / 2**30:.0f} GiB")
    if row.key == "compile":
        import torch._dynamo as dynamo

        dynamo.reset()
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()
    result = (f"A {fmt(row.a)}  B {fmt(row.b) if row.b is not None else row.b_text}  ratio {fmt_ratio(row.ratio)} "
              f"{row.unit}" if row.status == "ok" else row.error)
    ctx.log(f"{row.key}: {row.status} in {row.seconds:.1f} s: {result}")


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if abs(v) >= 0.01 else f"{v:.2e}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    lines = ["| row | what | A | B | ratio A/B | unit | peak memory | details |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.status == "ok":
            b = fmt(r.b) if r.b is not None else (r.b_text or "-")
            details = "; ".join(r.details + [f"row took {r.seconds:.0f} s"])
        else:
            b, details = "-", "; ".join([f"**{r.status}**: {r.error}" if r.error else f"**{r.status}**",
                                         *r.details])
        lines.append(f"| {r.key} | {cell(r.what)} | {fmt(r.a)} | {cell(b)} | {fmt_ratio(r.ratio)} | {r.unit} "
                     f"| {r.peak_mem} | {cell(details)} |")
    return "\n".join(lines)


def machine(ctx: Ctx) -> list[str]:
    versions = [f"torch {torch.__version__}", f"timm {timm.__version__}", f"resnas {resnas.__version__}"]
    try:
        versions.append(f"accelerate {metadata.version('accelerate')}")
    except metadata.PackageNotFoundError:
        pass
    versions.append(f"Python {platform.python_version()}")
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        device = (f"{p.name} (compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                  f"{p.multi_processor_count} SMs), CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        device = f"CPU: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return [f"- device: {device}", f"- versions: {', '.join(versions)}",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
            f"- host: {platform.node()}, {platform.platform()}"]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(ctx: Ctx, rows: list[Row], done: bool) -> str:
    a = ctx.args
    tf32 = ("allowed (torch.set_float32_matmul_precision('high'), cudnn.allow_tf32)" if a.tf32
            else "off (--no-tf32)")
    command = shlex.join(["python", os.path.relpath(__file__, os.getcwd()), *sys.argv[1:]])
    elapsed = time.perf_counter() - ctx.start
    state = f"finished in {elapsed:.0f} s" if done else f"in progress ({elapsed:.0f} s so far)"
    return "\n".join([
        "# resnas GPU benchmark", "",
        *machine(ctx),
        f"- command: `{command}`",
        f"- run: {state}, --budget {a.budget:.0f} s{', --quick' if a.quick else ''}", "",
        table(rows), "",
        "Settings: every step is forward + cross-entropy + backward + SGD (momentum 0.9, weight decay 1e-4) "
        "on random tensors created on the device (no host-to-device copies; the loader row draws from its "
        "on-device data set with pinned, non-blocking index copies). bf16 = torch.autocast(bfloat16) with "
        f"model and input in channels_last; fp32: contiguous, TF32 {tf32}. cudnn.benchmark on. "
        "Throughputs are images/s; the A/B sides of a row are timed in alternation, medians of the windows; "
        "warm-up steps (and compilation) excluded. MFU = 3 x 2 x forward MACs per image (conv + linear, "
        "torch's FlopCounterMode through resnas.network.count_macs) x images/s / dense bf16 peak.", "",
    ])


def write_report(ctx: Ctx, rows: list[Row], path: Path, done: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(report(ctx, rows, done))
    os.replace(tmp, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:N or cpu")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run (batch 2, 32 px, 1-step windows, a tiny model for loader and compile): tests")
    p.add_argument("--report", type=Path, default=HERE / "gpu_report.md", help="the Markdown report to write")
    p.add_argument("--rows", default=",".join(ROW_KEYS), help=f"comma-separated, of {', '.join(ROW_KEYS)}")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for all rows together (default 420; --quick 300); rows past it are skipped")
    p.add_argument("--batch", type=int, help="batch of the CIFAR-shaped rows: precision, loader, compile (128)")
    p.add_argument("--imagenet-batch", type=int, help="batch of the timm row (128)")
    p.add_argument("--mfu-batch", type=int, help="first batch of the mfu row, halved on out of memory (128)")
    p.add_argument("--mfu-min-batch", type=int, help="smallest batch the mfu row tries (8; --quick 2)")
    p.add_argument("--size", type=int, help="image size of the ImageNet rows: timm, mfu (224)")
    p.add_argument("--cifar-size", type=int, default=32, help="image size of the CIFAR-shaped rows")
    p.add_argument("--steps", type=int, help="steps per timed window, every row (default per row)")
    p.add_argument("--repeats", type=int, help="timed windows per side, every row (default per row)")
    p.add_argument("--warmup", type=int, help="warm-up steps per side, every row (default per row)")
    p.add_argument("--peak-tflops", type=float, help="the peak for the mfu row (default: from the device name)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="allow TF32 in the fp32 side of the precision row")
    p.add_argument("--compile-model", help=f"model of the compile row (preact_resnet164; --quick: {TINY_SPEC})")
    p.add_argument("--compile-backend", help="torch.compile backend (inductor; --quick on a CPU: aot_eager)")
    p.add_argument("--compile-mode", help="torch.compile mode (default: torch's default)")
    p.add_argument("--loader-model", help=f"model of the loader row (preact_resnet164; --quick: {TINY_SPEC})")
    p.add_argument("--loader-images", type=int, help="images of the loader row's data set (50,000; --quick 256)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    a = p.parse_args(argv)
    q = a.quick
    defaults = dict(budget=300.0 if q else 420.0, batch=2 if q else 128, imagenet_batch=2 if q else 128,
                    mfu_batch=2 if q else 128, mfu_min_batch=2 if q else 8, size=32 if q else 224,
                    compile_model=TINY_SPEC if q else "preact_resnet164",
                    compile_backend="aot_eager" if q and a.device == "cpu" else "inductor",
                    loader_model=TINY_SPEC if q else "preact_resnet164", loader_images=256 if q else 50_000)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in a.rows if r not in ROW_KEYS]
    if unknown or not a.rows:
        p.error(f"--rows: {', '.join(unknown) or 'none given'}; allowed: {', '.join(ROW_KEYS)}")
    a.rows = [r for r in ROW_KEYS if r in a.rows]
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: CUDA is not available here (use --device cpu)")
    for k in ("batch", "imagenet_batch", "mfu_batch", "mfu_min_batch", "size", "cifar_size", "steps", "repeats",
              "loader_images"):
        if getattr(a, k) is not None and getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-')}: must be >= 1")
    if a.warmup is not None and a.warmup < 1:
        p.error("--warmup: must be >= 1 (the first step autotunes and allocates)")
    return a


def plan_for(key: str, a: argparse.Namespace) -> Plan:
    plan = PLANS[key][1 if a.quick else 0]
    return Plan(a.steps or plan.steps, a.repeats or plan.repeats, a.warmup or plan.warmup, plan.cap)


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high" if a.tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = a.tf32
    ctx = Ctx(a, device, start)
    name = torch.cuda.get_device_name(device) if ctx.cuda else cpu_name()
    ctx.log(f"{name}; torch {torch.__version__}, timm {timm.__version__}; rows {', '.join(a.rows)}; "
            f"budget {a.budget:.0f} s; report {a.report}")
    rows = [Row(key) for key in a.rows]
    code = 0
    try:
        for row in rows:
            plan = plan_for(row.key, a)
            left = a.budget - (time.perf_counter() - start)
            if left < MIN_CAP:
                row.status, row.error = "skipped", f"not run: the --budget of {a.budget:.0f} s was spent"
                ctx.log(f"{row.key}: {row.error}")
            else:
                plan.cap = min(plan.cap, left)
                run_row(ctx, row, plan)
            write_report(ctx, rows, a.report, done=False)
    except KeyboardInterrupt:
        running = next((r for r in rows if r.status == "not run"), None)
        if running is not None:
            running.status, running.error = "interrupted", f"Ctrl-C during {ctx.phase}"
        code = 130
    write_report(ctx, rows, a.report, done=True)
    print()
    print(table(rows))
    failed = [r.key for r in rows if r.status in ("failed", "timed out")]
    ctx.log(f"report written to {a.report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    code = code or (1 if failed else 0)
    if any(r.status == "timed out" for r in rows):
        # a compilation cut short leaves its worker pool busy, and exit handlers would wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
