"""contrastive-hardneg: an example plugin for contrastive.

Adds the loss ``hard_negative`` (Robinson et al., ICLR 2021), the method ``hardneg_simclr``
(SimCLR with that loss and a hardness warm-up) and the augmentation ``gaussian_noise``.
Nothing here needs importing by hand: installing the distribution is enough, contrastive finds
it through the entry point in ``pyproject.toml``.
"""

from contrastive_hardneg.augment import GaussianNoise
from contrastive_hardneg.loss import HardNegativeLoss
from contrastive_hardneg.method import HardNegSimCLR

__version__ = "0.1.0"

__all__ = ["GaussianNoise", "HardNegSimCLR", "HardNegativeLoss", "__version__"]
