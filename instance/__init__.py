"""fleetsim.instance: one vLLM-v1-style serving engine in simulated time (imports only costmodel)."""
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.request import Request
from fleetsim.instance.block_manager import BlockManager
from fleetsim.instance.scheduler import Scheduler
from fleetsim.instance.engine import Engine

__all__ = ["BlockManager", "Engine", "EngineConfig", "Request", "Scheduler"]
