"""IC (intent classification): one output block per slot (action, object, location); right iff all slots are."""

from layerlab.probe.tasks.utterance import utterance_task

TASK = utterance_task("ic", ("ic",), "intent classification: accuracy with all slots right, plus per-slot accuracies")
