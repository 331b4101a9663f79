"""`EngineConfig`: the vLLM engine limits of one instance (vLLM names and defaults)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Engine knobs, named as vLLM names them.

    Defaults follow vLLM v1's offline defaults (max_num_seqs 256, max_num_batched_tokens 8192,
    block 16, chunked prefill and prefix caching on). `num_gpu_blocks` overrides the computed
    KV capacity (a real run's logged value can be used as-is). `max_model_len` defaults to the
    model's max_position_embeddings; a request longer than it, or than the whole KV cache, is
    rejected at load time (vLLM refuses such requests too). `async_scheduling` is vLLM's
    (`--async-scheduling` / `--no-async-scheduling`): None is vLLM ≥ 0.14's default, on except
    with pipeline parallelism (docs/engine.md); True with pp > 1 is rejected, as vLLM does.
    """
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    long_prefill_token_threshold: int = 0
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None
    max_model_len: int | None = None
    async_scheduling: bool | None = None

    def validate(self, source: str = "engine config") -> None:
        """Raise ValueError naming the first bad field."""
        for key in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{source}: {key} must be a positive integer, got {value!r}")
        for key in ("enable_chunked_prefill", "enable_prefix_caching"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{source}: {key} must be true or false, got {getattr(self, key)!r}")
        if self.async_scheduling is not None and not isinstance(self.async_scheduling, bool):
            raise ValueError(f"{source}: async_scheduling must be true or false, got {self.async_scheduling!r}")
        if not _is_int(self.long_prefill_token_threshold) or self.long_prefill_token_threshold < 0:
            raise ValueError(f"{source}: long_prefill_token_threshold must be an integer >= 0")
        util = self.gpu_memory_utilization
        if isinstance(util, bool) or not isinstance(util, (int, float)) or not (0 < util <= 1):
            raise ValueError(f"{source}: gpu_memory_utilization must be a number in (0, 1], got {util!r}")
        if self.num_gpu_blocks is not None and (not _is_int(self.num_gpu_blocks) or self.num_gpu_blocks < 1):
            raise ValueError(f"{source}: num_gpu_blocks must be a positive integer, got {self.num_gpu_blocks!r}")
        if self.max_model_len is not None and (not _is_int(self.max_model_len) or self.max_model_len < 2):
            raise ValueError(f"{source}: max_model_len must be an integer >= 2, got {self.max_model_len!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
