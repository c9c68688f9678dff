"""The few collective helpers the loop needs beyond DistributedDataParallel (torchrun environment).

``torchrun --nproc_per_node N -m deepsparse_core.training ...`` sets RANK, LOCAL_RANK and WORLD_SIZE;
the loop then calls ``init_process_group`` (NCCL on CUDA, gloo on CPU). Byte payloads (generator
states, weight checksums) travel as uint8 tensors: ``all_gather_object`` would pickle.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist


def environment() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the torchrun variables; (1, 0, 0) without them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, 0
    return world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


def all_gather_bytes(blob: bytes, device: torch.device, world: int) -> list[bytes]:
    """Every process's ``blob``, in rank order (a collective: all processes must call it)."""
    if world == 1:
        return [blob]
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(device) if blob else \
        torch.zeros(0, dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[:data.numel()] = data
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return [bytes(o[:int(s.item())].cpu().numpy()) for o, s in zip(out, sizes)]


def any_flags(flags: list[bool], device: torch.device, world: int) -> list[bool]:
    """Element-wise OR of boolean flags over all processes (a collective)."""
    t = torch.tensor([float(f) for f in flags], device=device)
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def parameter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of the parameters (name order), to check that all processes hold the same weights.

    Buffers are left out: BatchNorm running statistics differ between processes after their own last
    forward pass (DDP broadcasts rank 0's before each forward; rank 0's are saved).
    """
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
