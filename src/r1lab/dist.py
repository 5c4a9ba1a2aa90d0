"""Process-group facts without global state: every trainer asks these instead of assuming one process.

Everything here is the identity (or a no-op) on one process, so trainers call it unconditionally.
"""
from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from pathlib import Path
from typing import Callable, Any

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few scalars across ranks (metrics, loss normalisers); identity on one process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch_dist.all_reduce(t)
    return t.tolist()


def sync_gradients(model: torch.nn.Module) -> None:
    """Sum every trainable parameter's .grad across ranks (each rank's loss is already divided by the global
    token count, so the sum is the one-process gradient); no-op on one process."""
    if not is_distributed():
        return
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:  # a rank with no data this step still has to join every all-reduce
            p.grad = torch.zeros_like(p)
        torch_dist.all_reduce(p.grad)


# ---------------------------------------------------------------- launching
# torchrun, `accelerate launch` and SLURM-via-torchrun all describe the job in the environment
# (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); one process without them is a normal run.
def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched() -> bool:
    """True when a launcher started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> bool:
    """Join the process group the launcher describes, once per process (every trainer calls this; later
    calls are no-ops): gloo on CPU; on GPU NCCL for tensors on the device and gloo for the CPU scalars
    (metrics, counts). The group lives until the process exits. Returns True when this call created it."""
    if is_distributed() or not launched():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        torch_dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        torch_dist.init_process_group("gloo")
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    if is_distributed():
        torch_dist.destroy_process_group()


def device() -> torch.device:
    """Where this rank trains: its own GPU (LOCAL_RANK) when there is one, else the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


# ---------------------------------------------------------------- small reductions
def all_reduce_max(values: list[float]) -> list[float]:
    """Element-wise max across ranks (step times, micro-batch counts); identity on one process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return t.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable, small: per-sample scalars, not tensors), in rank order."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank, so that all ranks act on one decision (e.g. which checkpoint)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def pad_to_busiest(items: list) -> list:
    """`items` padded with None to the longest list on any rank: every rank then runs as many micro-batches
    (FSDP gathers weights in every forward, DDP reduces gradients in the last backward of each update)."""
    count = int(all_reduce_max([len(items)])[0])
    return list(items) + [None] * (count - len(items))


def gather_columns(positions: list[int], columns: dict[str, list], extra: Any = None) -> tuple[dict[str, list], list]:
    """Per-sample columns from every rank merged into global sample order (`positions` are this rank's
    samples' places in the whole batch), so that whole-batch numbers are computed as on one process;
    also every rank's `extra`, in rank order."""
    parts = all_gather_objects((positions, columns, extra))
    order = sorted((p, r, i) for r, (mine, _, _) in enumerate(parts) for i, p in enumerate(mine))
    merged = {k: [parts[r][1][k][i] for _, r, i in order] for k in columns}
    return merged, [part[2] for part in parts]


class Rank0Error(RuntimeError):
    """Raised on the other ranks when the work rank 0 did for everyone failed."""


def on_rank0(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only (sampling into a file, an evaluation) and hand its result to every rank.
    If it raises, rank 0 re-raises and every other rank raises Rank0Error, instead of waiting forever."""
    if not is_distributed():
        return fn()
    result, failure = None, None
    if rank() == 0:
        try:
            result = fn()
        except Exception as err:
            failure = err
    result, message = broadcast_object((result, None if failure is None else f"{type(failure).__name__}: {failure}"))
    if failure is not None:
        raise failure
    if message is not None:
        raise Rank0Error(f"rank 0 failed: {message}")
    return result


# ---------------------------------------------------------------- the training model
# Every rank's loss is its share of the global-batch loss (normalised by global totals), so the
# global gradient is the SUM of the ranks' gradients. DDP and FSDP average by default; both are
# told to sum instead, which gives exactly the one-process gradient (up to float summation order).
def _sum_allreduce_hook(state, bucket):
    work = torch_dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_model(model: torch.nn.Module, fsdp: bool = False) -> torch.nn.Module:
    """The module to run training forwards/backwards through: DDP (default) or FSDP2 under a launcher, the
    model itself on one process. Sampling, evaluation and saving use the unwrapped model (DDP shares its
    parameters; with FSDP they are sharded, see `full_state_dict`)."""
    if not is_distributed():
        return model
    if fsdp:
        try:
            from torch.distributed.fsdp import FSDPModule, fully_shard
        except ImportError:
            raise ValueError(f"fsdp needs torch >= 2.6 (FSDP2), this is {torch.__version__}") from None
        blocks = set(getattr(model, "_no_split_modules", None) or [])  # HF names its decoder layer classes here
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module)
        fully_shard(model)
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.set_gradient_divide_factor(1.0)  # sum, as the DDP hook below,
                if hasattr(module, "set_force_sum_reduction_for_comms"):  # a plain SUM: gloo has no PREMUL_SUM
                    module.set_force_sum_reduction_for_comms(True)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [local_rank()] if torch.cuda.is_available() else None
    # No buffer broadcast in each forward: buffers (rotary tables) are identical on every rank, and it would
    # make even no-grad forwards collective. (torch >= 2.13 names the switch forward_sync_buffers.)
    known = inspect.signature(DistributedDataParallel).parameters
    switch = "forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers"
    ddp = DistributedDataParallel(model, device_ids=ids, **{switch: False})
    ddp.register_comm_hook(None, _sum_allreduce_hook)
    return ddp


def is_sharded(model: torch.nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no FSDP2, so nothing is sharded
        return False
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def no_sync(model: torch.nn.Module, skip: bool = True):
    """Accumulate gradients locally (no all-reduce / reduce-scatter) for the backward passes inside."""
    if not skip or not is_distributed():
        yield
        return
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def grad_norm_value(norm) -> float:
    """clip_grad_norm_'s result as a float (a DTensor under FSDP)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter in full on every rank (a collective under FSDP); the plain state dict otherwise."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def save_sharded_optimizer(model: torch.nn.Module, optimizer, path: Path) -> None:
    """Each rank writes its optimizer shard (torch.distributed.checkpoint) under `path`; collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    dcp.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(path))


def load_sharded_optimizer(model: torch.nn.Module, optimizer, path: Path) -> None:
    """Inverse of `save_sharded_optimizer` (DCP reshards if the world size changed); collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=str(path))
    set_optimizer_state_dict(model, optimizer, state["optimizer"])
