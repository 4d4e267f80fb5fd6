"""Training one model on many machines (issue 16): synchronous rounds over workers that each
read, encode and keep their own shards.

``LocalEngine`` runs the workers in this process; ``RayEngine`` on a Ray cluster (Ray is
imported only when a ``RayEngine`` is made: ``pip install 'css-rs[ray]'``)::

    from css_rs.distributed import DistributedTrainer, LocalEngine, list_shards
    trainer = DistributedTrainer(LocalEngine(), config, list_shards(config))
    trainer.prepare()
    model = trainer.run()
"""

from css_rs.distributed.driver import (
    DistributedTrainer,
    RoundProgress,
    build_vocabulary,
)
from css_rs.distributed.engines import Engine, LocalEngine, RayEngine, make_engine
from css_rs.distributed.shards import ShardSpec, assign_shards, list_shards, shard_batches
from css_rs.distributed.worker import RoundResult, RoundTask, ShardWorker, count_shard

__all__ = [
    "DistributedTrainer",
    "Engine",
    "LocalEngine",
    "RayEngine",
    "RoundProgress",
    "RoundResult",
    "RoundTask",
    "ShardSpec",
    "ShardWorker",
    "assign_shards",
    "build_vocabulary",
    "count_shard",
    "list_shards",
    "make_engine",
    "shard_batches",
]
