"""Features → codes: the hash network, AHCL's discrete solver, the symmetric and unsupervised baselines,
checkpoints, the encoder for new images, and the run folder that ties them together."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.methods.ahcl import train_ahcl
    from hashidx.methods.baselines import LinearHash, fit_itq, fit_lsh
    from hashidx.methods.checkpoints import load_checkpoint, save_checkpoint
    from hashidx.methods.encoder import Encoder
    from hashidx.methods.head import HashHead
    from hashidx.methods.runs import METHODS, train_run
    from hashidx.methods.solver import update_codes
    from hashidx.methods.symmetric import train_symmetric
    from hashidx.methods.training import TrainConfig

__all__, __getattr__, __dir__ = lazy_exports(__name__)
