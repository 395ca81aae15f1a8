"""Multi-process data-parallel training (torchrun): gloo on CPU, NCCL on CUDA.

Rather than wrapping the networks in DistributedDataParallel, gradients are averaged by hand after
each backward pass (as StyleGAN2-ADA does): the alternating G/D steps, lazy R1 and frozen networks
then need no special cases, and every process holds identical weights at every step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from facegan.errors import FaceganError


@dataclass
class DistributedContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def check_batch_split(batch_size: int, world_size: int) -> None:
    """Each process takes an equal share of the global batch: refuse one that does not divide."""
    if batch_size % world_size:
        raise FaceganError(f"batch_size {batch_size} must divide evenly over {world_size} processes")


def average_gradients(module: nn.Module, context: DistributedContext) -> None:
    """Average .grad over processes, in one flat buffer (one collective instead of one per tensor)."""
    if not context.enabled:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for p in params:
        count = p.grad.numel()
        p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
        offset += count


def broadcast_module(module: nn.Module, context: DistributedContext) -> None:
    """Make every process start from rank 0's weights and buffers."""
    if not context.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_mean(value: float, context: DistributedContext) -> float:
    """Mean of a scalar over processes (for logging)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item() / context.world_size)


def any_rank(flags: list[bool], context: DistributedContext) -> list[bool]:
    """Each flag OR-ed over processes (an all-reduce MAX), so every rank takes the same decision at the same step."""
    if not context.enabled:
        return list(flags)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([int(flag) for flag in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


def shutdown_distributed(context: DistributedContext) -> None:
    """Wait for rank 0 to finish writing, then leave the process group (a process that exits while
    still in it makes gloo abort)."""
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
