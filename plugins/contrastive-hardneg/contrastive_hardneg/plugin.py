"""The plugin's entry point module: only the hook implementation, no logic of its own."""

from contrastive import hookimpl

from contrastive_hardneg.augment import GaussianNoise
from contrastive_hardneg.loss import HardNegativeLoss
from contrastive_hardneg.method import HardNegSimCLR


@hookimpl
def contrastive_register(registries):
    # Call form: register(name, factory).  The class is the factory; its __init__ signature is
    # what recipes may pass as `args`, and contrastive checks them before building.
    registries.losses.register("hard_negative", HardNegativeLoss)

    # Decorator form: handy for a small factory written right here.
    @registries.augmentations.register("gaussian_noise")
    def gaussian_noise(std: float = 0.05, p: float = 0.5) -> GaussianNoise:
        """Add Gaussian noise of standard deviation std to each image with probability p; clamp to [0, 1]."""
        return GaussianNoise(std=std, p=p)

    # A whole method: its constructor's recipe args (temperature, beta, ...) plus the parts it
    # names, injected by parameter name (backbone, head; it builds its own loss).
    registries.methods.register("hardneg_simclr", HardNegSimCLR)
