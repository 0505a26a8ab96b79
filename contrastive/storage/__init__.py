"""Where a run lives on disk: checkpoints that never unpickle, safe reading, atomic files, the run lock."""
