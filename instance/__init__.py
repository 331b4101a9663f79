"""fleetsim.instance: one vLLM-v1-style serving engine in simulated time (imports only costmodel)."""
from instance.config import EngineConfig
from instance.request import Request
from instance.block_manager import BlockManager
from instance.scheduler import Scheduler
from instance.engine import Engine

__all__ = ["BlockManager", "Engine", "EngineConfig", "Request", "Scheduler"]
