"""Training (what train.py runs): one concern a module.

- ``data``: the dataset's splits read and checked, what the model card records of the training
  pieces, and where the rules forbid words in them (unlikelihood_weight).
- ``checkpoints``: checkpoints saved whole, the latest intact one found, a finished run known,
  the output folder's lock.
- ``loop``: the accelerator, the model to train, the training loop and its evaluation.
- ``outputs``: the finished model folder (staged, then moved into place), its README and loss curve.
- ``runs``: one model trained from a dataset, or K models of a cross-validation; a run started
  or resumed as train.py's command line asks.
"""
