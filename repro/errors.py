"""Error types with one clear message each (docs/design.md §7).

Every error names the file, row or value at fault and says what to do, so
that a user never has to read a stack trace from deep inside torch.
"""



class ReproError(Exception):
    """Base class: a problem the user can fix (bad input, missing stage)."""


class DataError(ReproError):
    """Bad or missing data: image, CSV, keyword, split, data root."""


class ConfigError(ReproError):
    """A parameter outside its allowed set (p, profile, taxonomy, ...)."""


class WeightsUnavailableError(ConfigError):
    """Pretrained weights neither in the torch hub cache nor downloadable (offline)."""


class MissingStageError(ReproError):
    """An earlier stage's output (checkpoint, result) does not exist yet."""


class CheckpointError(ReproError):
    """A checkpoint file that is not a model this project wrote (garbage, truncated, foreign, unsafe)."""
