"""Methods: whole contrastive training methods, registered under the ``methods`` kind.

[`contrastive.methods.base`][contrastive.methods.base] holds the contract ([`Method`][contrastive.methods.base.Method], [`Batch`][contrastive.methods.base.Batch]); each
built-in method is one module ending with its hook implementation, exactly as a plugin's.
"""

from contrastive.methods.base import Batch, Method, Outputs

__all__ = ["Batch", "Method", "Outputs"]
