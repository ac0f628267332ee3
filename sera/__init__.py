"""sera: speech emotion recognition on frozen speech encoders with a small trained adapter."""

from .config import AudioConfig, DataConfig, EncoderConfig, SeraConfig
from .errors import AudioError, CacheError, CorpusError, EncoderError, SeraError

__version__ = "0.1.0"

__all__ = [
    "AudioConfig", "AudioError", "CacheError", "CorpusError", "DataConfig", "EncoderConfig",
    "EncoderError", "SeraConfig", "SeraError", "__version__",
]
