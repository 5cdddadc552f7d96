"""What AMA and UE cost: forward and forward+backward time and peak memory of the four variants.

For each backbone (the CPU default and the paper-scale pvt_v2_b5), the variants baseline, +AMA,
+UE and full are timed in interleaved rounds in one process (medians), so their ratios compare
like with like. Peak memory comes from one child process per variant (CPU: growth of the peak RSS
over the built model's; CUDA: max allocated). A per-module breakdown of the full model's forward
says what costs what. Writes benchmarks/results/model_cost.{json,md}.

    python benchmarks/model_cost.py [--device cpu|cuda] [--bf16] [--frames 5] [--size 224]
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import re
import statistics
import time
from pathlib import Path

import torch

from avs.config import Config, config_from_dict
from avs.model import build_model, compute_losses
from avs.train.step import freeze_audio_encoder, set_training_mode

RESULTS = Path(__file__).parent / "results"
VARIANTS = {
    "baseline": {"ama": {"enabled": False}, "ue": {"enabled": False}},
    "+AMA": {"ue": {"enabled": False}},
    "+UE": {"ama": {"enabled": False}},
    "full": {},
}
MODELS = {
    "cpu default (efficientnet_lite0, aisfx)": {},
    "paper scale (pvt_v2_b5, vggish)": {
        "backbone": "pvt_v2_b5",
        "audio_encoder": "vggish",
        "freeze_audio": False,
        "decoder_dim": 256,
    },
    "paper scale (resnet50, vggish)": {
        "backbone": "resnet50",
        "audio_encoder": "vggish",
        "freeze_audio": False,
        "decoder_dim": 256,
    },
}


def parameter_counts(model_params: dict) -> dict[str, float]:
    """Millions of parameters of the backbone, AMA (all stages) and UE in the full model."""
    model = build_model(make_config(model_params, VARIANTS["full"]))

    def millions(module: torch.nn.Module | None) -> float:
        return round(sum(p.numel() for p in module.parameters()) / 1e6, 2) if module is not None else 0.0

    return {"backbone": millions(model.visual), "AMA": millions(model.alignments), "UE": millions(model.uncertainty)}


def make_config(model: dict, variant: dict) -> Config:
    # random weights: the timings do not depend on them
    return config_from_dict({"model": {"backbone_weights": None, **model, **variant}})


def make_inputs(clips: int, frames: int, size: int, device: str) -> tuple[torch.Tensor, ...]:
    """Random (frames (B, T, 3, S, S), audio (B, T, 16000), masks (B, T, S, S)), the same every call."""
    g = torch.Generator().manual_seed(0)
    video = torch.rand(clips, frames, 3, size, size, generator=g)
    audio = torch.randn(clips, frames, 16000, generator=g) * 0.1  # 1 s of 16 kHz audio per frame
    masks = (torch.rand(clips, frames, size, size, generator=g) > 0.8).long()
    return tuple(t.to(device) for t in (video, audio, masks))


def device_label(device: str) -> str:
    """The GPU's name, or 'cpu (N threads)'."""
    return torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def write_results(stem: str, result: dict, markdown: str, device: str, bf16: bool) -> None:
    """benchmarks/results/<stem>[_cuda[_bf16]].{json,md}, and the markdown printed."""
    suffix = "" if device == "cpu" else f"_{device}{'_bf16' if bf16 else ''}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{stem}{suffix}.md").write_text(markdown)
    print(markdown)


def step(model: torch.nn.Module, cfg: Config, inputs: tuple, backward: bool, bf16: bool) -> None:
    frames, audio, masks = inputs
    autocast = torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16)
    if backward:
        set_training_mode(model, cfg.model.freeze_audio)
        with autocast:
            outputs = model(frames, audio)
            loss = compute_losses(
                outputs, masks, torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device), cfg.loss, 5.0
            )
        loss["total"].backward()
        model.zero_grad(set_to_none=True)
    else:
        model.eval()
        with torch.inference_mode(), autocast:
            model(frames, audio)
    if frames.device.type == "cuda":
        torch.cuda.synchronize()


def time_variants(model_params: dict, args: argparse.Namespace) -> dict:
    inputs = make_inputs(args.clips, args.frames, args.size, args.device)
    built = {}
    for name, variant in VARIANTS.items():
        torch.manual_seed(0)
        cfg = make_config(model_params, variant)
        model = build_model(cfg).to(args.device)
        if cfg.model.freeze_audio:
            freeze_audio_encoder(model)  # as the train stage does
        built[name] = (model, cfg)
    times = {(name, mode): [] for name in built for mode in ("forward", "forward+backward")}
    for backward, mode in ((False, "forward"), (True, "forward+backward")):
        for name, (model, cfg) in built.items():
            step(model, cfg, inputs, backward, args.bf16)  # warm-up
        for _ in range(args.rounds):
            for name, (model, cfg) in built.items():
                start = time.perf_counter()
                step(model, cfg, inputs, backward, args.bf16)
                times[(name, mode)].append(time.perf_counter() - start)
    per_frame = args.clips * args.frames
    return {
        name: {
            mode: round(statistics.median(times[(name, mode)]) * 1e3 / per_frame, 2)
            for mode in ("forward", "forward+backward")
        }
        for name in built
    }


def _peak_memory_child(model_params: dict, variant: dict, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    cfg = make_config(model_params, variant)
    model = build_model(cfg).to(args.device)
    if cfg.model.freeze_audio:
        freeze_audio_encoder(model)
    inputs = make_inputs(args.clips, args.frames, args.size, args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(model, cfg, inputs, True, args.bf16)
        queue.put((torch.cuda.max_memory_allocated() - base) / 2**20)
    else:
        # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kib("VmRSS")
        step(model, cfg, inputs, True, args.bf16)
        queue.put((_status_kib("VmHWM") - base) / 1024)


def _status_kib(key: str) -> int:
    match = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1))


def peak_memory(model_params: dict, args: argparse.Namespace) -> dict:
    context = mp.get_context("spawn")
    peaks = {}
    for name, variant in VARIANTS.items():
        queue = context.Queue()
        child = context.Process(target=_peak_memory_child, args=(model_params, variant, args, queue))
        child.start()
        peaks[name] = round(queue.get(), 1)
        child.join()
    return peaks


def breakdown(model_params: dict, args: argparse.Namespace) -> dict:
    """Forward time per module of the full model (hooks), ms per frame."""
    torch.manual_seed(0)
    model = build_model(make_config(model_params, {})).to(args.device).eval()
    inputs = make_inputs(args.clips, args.frames, args.size, args.device)
    parts = {
        "audio encoder": [model.audio],
        "backbone stages": list(model.visual.stages),
        "AMA": list(model.alignments.values()),
        "decoder + mask head": [model.decoder, model.mask_head],
        "UE (temporal attention + evidence)": [model.uncertainty],
    }
    totals = collections.defaultdict(float)

    def clock() -> float:  # a GPU runs ahead of the host: wait for its work so that each module gets its own
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    for part, modules in parts.items():
        for module in modules:
            module.register_forward_pre_hook(lambda m, i: setattr(m, "_start", clock()))
            module.register_forward_hook(
                lambda m, i, o, part=part: totals.__setitem__(part, totals[part] + clock() - m._start)
            )
    step(model, None, inputs, False, args.bf16)
    totals.clear()
    start = time.perf_counter()
    for _ in range(args.rounds):
        step(model, None, inputs, False, args.bf16)
    whole = time.perf_counter() - start
    per_frame = args.rounds * args.clips * args.frames
    result = {part: round(totals[part] * 1e3 / per_frame, 2) for part in parts}
    result["rest (upsampling, audio query, u, m')"] = round((whole - sum(totals.values())) * 1e3 / per_frame, 2)
    result["whole forward"] = round(whole * 1e3 / per_frame, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--clips", type=int, default=1)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="which models (default: all)"
    )
    args = parser.parse_args()
    result = {
        "benchmark": "model_cost",
        "device": device_label(args.device),
        "cpus": os.cpu_count(),
        **vars(args),
        "models": {},
    }
    for label in args.models:
        params = MODELS[label]
        print(f"{label} ...", flush=True)
        timing = time_variants(params, args)
        memory = peak_memory(params, args)
        result["models"][label] = {
            "ms_per_frame": timing,
            "peak_memory_mib": memory,
            "parameters_m": parameter_counts(params),
            "breakdown_ms_per_frame": breakdown(params, args),
        }
    write_results("model_cost", result, render(result), args.device, args.bf16)


def render(result: dict) -> str:
    lines = [
        f"# Model cost: AMA and UE against the baseline ({result['device']}, {result['clips']} clip of "
        f"{result['frames']} frames at {result['size']} px, {'bf16' if result['bf16'] else 'fp32'}, median of "
        f"{result['rounds']} interleaved rounds)",
        "",
        "Times are ms per frame; ratios are against the baseline of the same model, from the same run. "
        "Memory is the peak growth during one forward+backward (MiB).",
        "",
    ]
    for label, data in result["models"].items():
        base = data["ms_per_frame"]["baseline"]
        lines += [
            f"## {label}",
            "",
            "| variant | forward | x baseline | fwd+bwd | x baseline | peak memory |",
            "|---|---|---|---|---|---|",
        ]
        for name, times in data["ms_per_frame"].items():
            lines.append(
                f"| {name} | {times['forward']} | {times['forward'] / base['forward']:.2f} | "
                f"{times['forward+backward']} | {times['forward+backward'] / base['forward+backward']:.2f} | "
                f"{data['peak_memory_mib'][name]} |"
            )
        added = data["ms_per_frame"]["full"]["forward"] / base["forward"] - 1
        verdict = "met" if added <= 0.25 else "not met"
        counts = data["parameters_m"]
        lines += [
            "",
            f"AMA + UE add {added:.0%} to the forward time (target: at most 25 %: {verdict}).",
            f"Parameters (millions): backbone {counts['backbone']}, AMA {counts['AMA']} "
            f"({counts['AMA'] / counts['backbone']:.2f}x the backbone), UE {counts['UE']}.",
            "",
            "Where the full model's forward time goes (ms per frame):",
            "",
            "| part | ms |",
            "|---|---|",
        ]
        lines += [f"| {part} | {ms} |" for part, ms in data["breakdown_ms_per_frame"].items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
