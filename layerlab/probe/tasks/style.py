"""Speaking style (the synthetic corpus's stand-in for SUPERB ER) and ER itself (IEMOCAP folds); accuracy."""

from layerlab.probe.tasks.utterance import utterance_task

TASK = utterance_task("style", ("style", "er"), "speaking style (synthetic ER stand-in)")
ER_TASK = utterance_task("er", ("er", "style"), "emotion recognition (IEMOCAP: each session as test in turn, mean over the 5 folds)")
