"""Speaking style (the synthetic corpus's stand-in for SUPERB ER) and ER itself (IEMOCAP folds); accuracy."""

from layerlab.probe.tasks.utterance import utterance_task

# each reads its own labels only: ER on a corpus without emotion labels is an error, never style labels reported as ER
TASK = utterance_task("style", ("style",), "speaking style (synthetic ER stand-in)")
ER_TASK = utterance_task("er", ("er",), "emotion recognition (IEMOCAP: each session as test in turn, mean over the 5 folds)")
