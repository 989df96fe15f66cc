"""SID (speaker identification): projector -> mean pool -> linear over training speakers; accuracy.

Without a SID split in the dataset (e.g. an imported LibriSpeech folder) each speaker's utterances are
split train/dev/test, stratified and seeded; the rule is recorded with the results.
"""

from layerlab.probe.tasks.utterance import utterance_task

TASK = utterance_task("sid", ("sid",), "speaker identification over the training speakers")
