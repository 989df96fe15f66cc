"""KS (keyword spotting, 12 classes in SUPERB): projector -> mean pool -> linear on the ``ks`` label; accuracy."""

from layerlab.probe.tasks.utterance import utterance_task

TASK = utterance_task("ks", ("ks",), "keyword spotting: 10 keywords + _unknown_ + _silence_")
