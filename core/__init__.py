"""Deepfake audio detection engine: audio -> features -> models -> P(fake).

`core` never imports streamlit; the dashboard, the CLI (`python -m core`) and notebooks
all call the same functions.
"""

__all__ = ["Detector", "DetectorError"]


def __getattr__(name):  # lazy, so `import core.audio` does not pull in every model
    if name == "Detector":
        from .inference import Detector
        return Detector
    if name == "DetectorError":
        from .errors import DetectorError
        return DetectorError
    raise AttributeError(name)
