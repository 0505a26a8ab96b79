"""Built-in components; each module registers its parts through the contrastive_register hook."""
